//! loss (to be written).
