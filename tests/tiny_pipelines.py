"""Tiny randomly initialised diffusers models and pipelines, saved to a folder (no real weights
can be fetched in the tests): a UNet folder, a latent pipeline and a Stable-Diffusion-style text
pipeline with a CLIP tokenizer and text encoder written here. The worker's tests get them through
the ``tiny_models`` fixture, the client's import them."""

import json

import torch


def tiny_unet(**kw):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 32), layers_per_block=1,
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), **kw)


def save_diffusers(root, name, scheduler, **kw):
    """A flat diffusers folder ``root/name``: a 1x8x8 UNet2DModel (``kw``: e.g. num_class_embeds) and ``scheduler``."""
    unet = tiny_unet(**kw)
    unet.save_pretrained(root / name)
    scheduler.save_config(root / name)
    return unet


def save_latent_pipeline(out):
    """A tiny latent model in the pipeline layout: 1x16x16 images <-> 4x4x4 latents (fewer latent than pixel dimensions)."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(2)
    UNet2DModel(sample_size=4, in_channels=4, out_channels=4, block_out_channels=(16, 16), layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2).save_pretrained(out / "unet")
    tiny_vae(1, levels=3).save_pretrained(out / "vae")
    DDPMScheduler(num_train_timesteps=1000).save_config(out / "scheduler")
    index = {"_class_name": "LatentDiffusionPipeline", "unet": ["diffusers", "UNet2DModel"],
             "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDPMScheduler"]}
    (out / "model_index.json").write_text(json.dumps(index))


def tiny_vae(channels, levels=2):
    """An AutoencoderKL with 4 latent channels, downsampling by 2 ** (levels - 1), latents scaled by 0.5."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * levels,
                         up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(8,) * levels, latent_channels=4,
                         norm_num_groups=8, sample_size=8 * 2 ** (levels - 2), scaling_factor=0.5)


def tiny_tokenizer(folder):
    """A CLIP BPE tokenizer from a vocabulary of letters and three words, written here."""
    from transformers import CLIPTokenizer

    folder.mkdir()
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab, merges = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)], []
    for word in ("cat", "dog", "red"):
        cur = word[0]
        for piece in [*word[1:-1], word[-1] + "</w>"]:
            merges.append(f"{cur} {piece}")
            cur += piece
            vocab.append(cur)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=8)


def save_text_pipeline(out, vocab_dir):
    """A tiny randomly initialised Stable-Diffusion-style pipeline (CLIP text encoder, cross-attention UNet, VAE)."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(vocab_dir)
    torch.manual_seed(3)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, max_position_embeddings=8, bos_token_id=0, eos_token_id=1,
                                                pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, block_out_channels=(16, 16), layers_per_block=1,
                                norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=4)
    pipe = StableDiffusionPipeline(vae=tiny_vae(3), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDPMScheduler(num_train_timesteps=1000, steps_offset=1, clip_sample=False), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)
