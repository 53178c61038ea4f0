"""
Autoencoder downsampling factor 4 vs 8 by measurement (cf. Ramunno et al. 2025, Fig. 4).

Trains the same one-channel AutoencoderKL at both factors on HMI crops of the training days with the
package's training loop, then prints PSNR and unsigned-flux error on strong-field crops of a held-out
day. Run from the repository root::

    python benchmarks/autoencoder_factor.py --steps 400 --data-dir ../shared/data/hmi
"""

import argparse
import time

import numpy as np
import torch

from sunpy_superres.models.autoencoder import MagnetogramAutoencoder, reconstruction_metrics
from sunpy_superres.training import CropDataset, TrainConfig, train
from sunpy_superres.training.config import DataConfig, ModelConfig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--data-dir", default="../shared/data/hmi")
    parser.add_argument("--validation-date", default="2016-07-07")
    parser.add_argument("--output-dir", default="runs/ae-factor")
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    val_path = sorted(__import__("glob").glob(f"{args.data_dir}/*{args.validation_date.replace('-', '')}*"))
    val = CropDataset(val_path, crop_size=256, strong_field_fraction=1.0, augment=False, seed=123)
    hr = np.stack([val.sample(i) for i in range(16)])
    for factor in (4, 8):
        cfg = TrainConfig(
            name=f"ae-f{factor}",
            output_dir=f"{args.output_dir}/f{factor}",
            max_steps=args.steps,
            checkpoint_every=max(1, args.steps // 4),
            data=DataConfig(
                data_dir=args.data_dir, crop_size=args.crop, validation_dates=[args.validation_date]
            ),
            model=ModelConfig(
                kind="autoencoder",
                autoencoder={
                    "factor": factor,
                    "latent_channels": 4,
                    "base_channels": 16,
                    "max_channels": 32,
                    "norm_num_groups": 8,
                },
            ),
        )
        t0 = time.perf_counter()
        path = train(cfg, progress=False)
        minutes = (time.perf_counter() - t0) / 60
        ae = MagnetogramAutoencoder.from_pretrained(path, use_safetensors=True).eval()
        m_all = reconstruction_metrics(ae, hr)
        m_strong = reconstruction_metrics(ae, hr, threshold=100 / 3000)
        x = torch.zeros(1, 1, 1024, 1024)
        with torch.no_grad():
            t1 = time.perf_counter()
            z = ae.encode_mean(x)
            t2 = time.perf_counter()
            ae.decode_latent(z)
            t3 = time.perf_counter()
        rows.append(
            (
                factor,
                sum(p.numel() for p in ae.parameters()),
                minutes,
                m_all["psnr"],
                m_all["rmse_gauss"],
                100 * m_all["flux_error"],
                100 * m_strong["flux_error"],
                t2 - t1,
                t3 - t2,
            )
        )
    print(
        f"{args.steps} steps, batch 4, {args.crop}px crops; 16 strong-field 256px crops of {args.validation_date}"
    )
    print(
        "| factor | params | train min | PSNR dB | RMSE G | flux err % | flux err % (>100 G) "
        "| enc 1024 s | dec 1024 s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| {} | {:,} | {:.1f} | {:.2f} | {:.1f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} |".format(*r))


if __name__ == "__main__":
    main()
