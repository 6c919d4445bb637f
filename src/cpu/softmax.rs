//! softmax (to be written).
