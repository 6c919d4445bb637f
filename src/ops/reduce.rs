//! reduce (to be written).
