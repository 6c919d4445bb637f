//! gemm (to be written).
