// loss.cu (to be written)
#include "common.cuh"
