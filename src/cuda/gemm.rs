//! cuBLAS GEMM launchers (to be written).
