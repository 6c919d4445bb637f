//! attention (to be written).
