"""The Diffusion LightningModule under a real Trainer: EMA, sampling swap-in, checkpoints."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support import quick_fit

from monet.data import MonetDataModule
from monet.diffusion import GaussianDiffusion, sample
from monet.errors import ConfigError
from monet.models import Diffusion
from monet.models.ema import EMA
from monet.nets import LibUnet


def tiny(size=32, **kw) -> Diffusion:
    net = LibUnet(image_size=size, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=8)
    return Diffusion(
        net,
        GaussianDiffusion(timesteps=20),
        sampler="ddim",
        sampling_steps=5,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
        **kw,
    )


def fit(model, kaggle_dir, tmp_path, **kw):
    kw = {"max_steps": 4, "limit_val_batches": 1, "enable_checkpointing": True, **kw}
    return quick_fit(model, kaggle_dir, tmp_path, **kw)


def test_ema_tracks_the_live_weights_and_is_used_for_sampling(kaggle_dir, tmp_path):
    model = tiny(ema=EMA(half_life=None, decay=0.9))
    fit(model, kaggle_dir, tmp_path, enable_checkpointing=False)
    live = torch.cat([p.flatten() for p in model.denoiser.parameters()])
    ema = torch.cat([p.flatten() for p in model.ema.parameters()])
    assert not torch.equal(live, ema) and model.ema.steps == 4 and model.ema.images == 16
    assert not any(p.requires_grad for p in model.ema.parameters())
    noise = model.sample_noise(2, torch.Generator().manual_seed(0))
    got = model.generate(noise)
    want = sample(model.process, model.ema.net, noise, "ddim", 5).clamp(-1, 1)
    live_out = sample(model.process, model.denoiser, noise, "ddim", 5).clamp(-1, 1)
    assert torch.allclose(got, want) and not torch.allclose(got, live_out)
    assert got.shape == (2, 3, 32, 32)


def test_ema_updates_once_per_optimizer_step_with_accumulation(kaggle_dir, tmp_path):
    model = tiny()
    trainer = fit(
        model,
        kaggle_dir,
        tmp_path,
        max_steps=2,
        accumulate_grad_batches=2,
        enable_checkpointing=False,
    )
    assert trainer.global_step == 2 and model.ema.steps == 2 and model.ema.images == 16


def test_ema_weights_and_warmup_state_are_in_the_checkpoint(kaggle_dir, tmp_path):
    model = tiny()
    trainer = fit(model, kaggle_dir, tmp_path)
    path = tmp_path / "end.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=False)
    assert any(k.startswith("ema.net.") for k in ckpt["state_dict"])
    assert ckpt["state_dict"]["ema._extra_state"] == {"steps": 4, "images": 16}
    again = tiny()
    again.on_load_checkpoint(ckpt)
    again.load_state_dict(ckpt["state_dict"])
    for a, b in zip(again.ema.parameters(), model.ema.parameters()):
        assert torch.equal(a, b)
    assert (again.ema.steps, again.ema.images) == (4, 16)


def test_without_ema_the_live_network_samples(kaggle_dir, tmp_path):
    model = tiny(ema=None)
    fit(model, kaggle_dir, tmp_path, enable_checkpointing=False)
    assert model.ema is None and model.sampling_net is model.denoiser


def test_validation_loss_is_deterministic(kaggle_dir):
    model = tiny()
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=2
    )
    first = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    second = trainer.validate(model, dm, verbose=False)[0]["val/loss"]
    assert first == second


def test_lr_scheduler_from_config_steps_every_optimizer_step(kaggle_dir, tmp_path):
    model = tiny(lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s))
    fit(model, kaggle_dir, tmp_path, max_steps=3, enable_checkpointing=False)
    assert model.optimizers().param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**3)


def test_denoiser_size_mismatch_fails_before_training(kaggle_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"denoiser is built for 64 px but data.image_size=32"):
        fit(tiny(size=64), kaggle_dir, tmp_path)


@pytest.mark.parametrize(
    "sampler, eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)], ids=["ddpm", "ddim", "ddim-eta1"]
)
def test_sampling_is_seeded_per_image_and_leaves_the_training_rng_alone(sampler, eta):
    model = tiny(ema=None)
    model.sampler, model.eta = sampler, eta
    seeds = torch.arange(6)
    state = torch.get_rng_state()
    four_two = torch.cat([model.predict_step(s, 0) for s in seeds.split(4)])
    three_three = torch.cat([model.predict_step(s, 0) for s in seeds.split(3)])
    assert torch.equal(torch.get_rng_state(), state)  # grids and metrics change no training
    torch.testing.assert_close(four_two, three_three, rtol=0, atol=1e-3)  # batched rounding
    again = model.predict_step(seeds[:1], 0)
    torch.testing.assert_close(again, four_two[:1], rtol=0, atol=1e-3)
    assert not torch.allclose(four_two[0], four_two[1])  # each image its own noise


def test_edm_training_with_heun_through_a_real_fit(kaggle_dir, tmp_path):
    from monet.diffusion import EDMDiffusion

    net = LibUnet(image_size=32, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=8)
    model = Diffusion(net, EDMDiffusion(sigma_data=0.42), "heun", 3, churn=1.0)
    fit(model, kaggle_dir, tmp_path, max_steps=2)
    noise = model.sample_noise(2, torch.Generator().manual_seed(0))
    images = model.generate(noise)
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1
    torch.testing.assert_close(model.generate(noise), images)  # churn seeded per image
    assert not torch.allclose(model.generate(noise, steps=2), images)  # grids' own steps


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"sampler": "ddim"}, r"sampler / sampling_steps: sampler 'ddim' steps through a discrete"),
        ({"sampler": "euler"}, r"unknown sampler 'euler': use one of 'ddpm', 'ddim', 'heun'"),
        ({"sampler": "heun", "churn": -1}, r"churn=-1 must be at least 0"),
    ],
)
def test_sampler_options_are_refused_at_construction_naming_the_key(kw, message):
    from monet.diffusion import EDMDiffusion

    net = LibUnet(image_size=32, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=8)
    with pytest.raises(ConfigError, match=message):
        Diffusion(net, EDMDiffusion(), **kw)
