// optim.cu: Adam / AdamW parameter update, in place, f32 parameters and state.
//
// Per element, in torch.optim.Adam(W)'s order (non-amsgrad):
//   g += grad_decay * p (Adam's weight decay); p *= param_scale (AdamW's, 1 - lr*wd);
//   m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
//   p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
// with step_size = lr / (1 - b1^t) and bc2_sqrt = sqrt(1 - b2^t) computed in f64 on the host.
// Precision: f32 throughout (as torch's f32 kernels). Launch: one thread per element, 256 per
// block (memory-bound: 16 bytes read and 12 written per element).

#include "common.cuh"

extern "C" __global__ void adam_step_f32(float* __restrict__ p, const float* __restrict__ g,
                                         float* __restrict__ m, float* __restrict__ v, long long n,
                                         float grad_decay, float param_scale, float beta1,
                                         float one_minus_beta1, float beta2, float one_minus_beta2,
                                         float step_size, float bc2_sqrt, float eps) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = p[i], gi = g[i];
    if (grad_decay != 0.0f) gi += grad_decay * pi;
    pi *= param_scale;
    const float mi = beta1 * m[i] + one_minus_beta1 * gi;
    const float vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    p[i] = pi - step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
}
