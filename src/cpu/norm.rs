//! norm (to be written).
