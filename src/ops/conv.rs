//! conv (to be written).
