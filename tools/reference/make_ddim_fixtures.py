"""Reference values for revelio's DDIM scheduler (src/models/ddim.rs), from diffusers'
DDIMScheduler.

Writes tests/fixtures/ddim/:
  sd15/scheduler_config.json  SD 1.5's file (a PNDMScheduler config that DDIMScheduler loads)
  sd21/scheduler_config.json  SD 2.1's (v_prediction)
  dit/scheduler_config.json   DiT's schedule (linear betas 1e-4..0.02; diffusers' defaults otherwise)
  ddim.safetensors            for each config C:
    C.alphas_cumprod                        f32 [1000]
    C.<spacing>.timesteps.<n>               [n] (int64 in diffusers, stored as i32), for each spacing
                                            and n in STEP_COUNTS (not for sd21: same as sd15)
    C.add_noise.per_sample / C.add_noise.t200   add_noise(X0, NOISE, t) with t = ADD_NOISE_T / 200
    C.<spacing>.<prediction>.final<n>       the sample after an n-step eta=0 DDIM loop from
                                            SAMPLE0 with model_output = 0.1 * sample + EPS
  plus the inputs X0, NOISE, SAMPLE0, EPS (seeded torch.randn).

  /work/refvenv/bin/python tools/reference/make_ddim_fixtures.py
"""

import json
import os

import diffusers
import torch
from diffusers import DDIMScheduler
from safetensors.torch import save_file

FORMAT_VERSION = "1"
HINT = "re-run tools/reference/make_ddim_fixtures.py"
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "ddim")

CONFIGS = {
    # runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
    "sd15": {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
             "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
             "clip_sample": False},
    # stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json
    "sd21": {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
             "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
             "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None},
    # DiT's training schedule (linear 1e-4..0.02, 1000 steps), diffusers' defaults otherwise
    "dit": {"_class_name": "DDIMScheduler", "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
            "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "epsilon",
            "set_alpha_to_one": True, "steps_offset": 0, "trained_betas": None},
}
SPACINGS = ["leading", "trailing", "linspace"]
STEP_COUNTS = [1, 2, 3, 4, 5, 6, 7, 10, 13, 20, 25, 30, 33, 50, 64, 100, 128, 250]
LOOP_STEPS = [50, 20]
ADD_NOISE_T = [0, 25, 500, 999]


def scheduler(name, spacing=None, prediction=None):
    s = DDIMScheduler.from_pretrained(os.path.join(OUT, name))
    overrides = {}
    if spacing is not None:
        overrides["timestep_spacing"] = spacing
    if prediction is not None:
        overrides["prediction_type"] = prediction
    return DDIMScheduler.from_config(s.config, **overrides) if overrides else s


def main():
    for name, cfg in CONFIGS.items():
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        with open(os.path.join(OUT, name, "scheduler_config.json"), "w") as f:
            json.dump(cfg, f, indent=2)

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 4, 4, 4, generator=g)
    noise = torch.randn(4, 4, 4, 4, generator=g)
    sample0 = torch.randn(2, 4, 4, 4, generator=g)
    eps = torch.randn(2, 4, 4, 4, generator=g)
    tensors = {"X0": x0, "NOISE": noise, "SAMPLE0": sample0, "EPS": eps}

    for name in CONFIGS:
        base = scheduler(name)
        tensors[f"{name}.alphas_cumprod"] = base.alphas_cumprod.clone()
        tensors[f"{name}.add_noise.per_sample"] = base.add_noise(x0, noise, torch.tensor(ADD_NOISE_T))
        tensors[f"{name}.add_noise.t200"] = base.add_noise(x0, noise, torch.tensor([200]))
        for spacing in SPACINGS:
            s = scheduler(name, spacing=spacing)
            for n in STEP_COUNTS if name != "sd21" else []:  # sd21's equal sd15's
                s.set_timesteps(n)
                assert s.timesteps.dtype == torch.int64
                tensors[f"{name}.{spacing}.timesteps.{n}"] = s.timesteps.to(torch.int32)
            predictions = ["epsilon", "v_prediction", "sample"] if name == "sd15" else [base.config.prediction_type]
            for prediction in predictions:
                s = scheduler(name, spacing=spacing, prediction=prediction)
                for n in LOOP_STEPS:
                    s.set_timesteps(n)
                    x = sample0.clone()
                    for t in s.timesteps:
                        model_output = 0.1 * x + eps
                        x = s.step(model_output, t, x, eta=0.0).prev_sample
                    tensors[f"{name}.{spacing}.{prediction}.final{n}"] = x

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"format_version": FORMAT_VERSION, "hint": HINT, "diffusers": diffusers.__version__,
            "torch": torch.__version__, "add_noise_t": json.dumps(ADD_NOISE_T),
            "step_counts": json.dumps(STEP_COUNTS), "loop_steps": json.dumps(LOOP_STEPS)}
    path = os.path.join(OUT, "ddim.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
