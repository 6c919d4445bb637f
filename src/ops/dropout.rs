//! dropout (to be written).
