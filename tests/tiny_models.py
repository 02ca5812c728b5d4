"""Tiny, randomly initialised models that tests build and save locally (the hub is unreachable)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# The class names the tiny text-to-image tests give a Stable Diffusion folder.
SD_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]


def tiny_vae():
    """A random-weight AutoencoderKL of two blocks: it halves the resolution once, so 4x4 latents
    decode to 8x8 images."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=8,
    )

def save_tiny_unet(
    folder: Path,
    num_classes: int = 5,
    null_class: bool = True,
    image_size: int = 8,
    channels: int = 1,
    scheduler: str = "DPMSolverMultistepScheduler",
    class_conditional: bool = True,
    template: bool = False,
    seed: int = 0,
) -> Path:
    """A diffusers folder (unet/, scheduler/, ptgen.json) small enough to sample in milliseconds."""
    import diffusers
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=image_size,
        in_channels=channels * (2 if template else 1),
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=(num_classes + int(null_class)) if class_conditional else None,
    )
    # Random weights give near-uniform grey images; widen the output so that images differ visibly.
    with torch.no_grad():
        unet.conv_out.weight.mul_(20)
    unet.save_pretrained(folder / "unet")
    getattr(diffusers, scheduler)(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    meta = {
        "null_class": null_class,
        "class_names": [f"tiny class {i}" for i in range(num_classes)],
        "defaults": {"steps": 4, "guidance": 2.0 if null_class else 1.0},
    }
    if template:
        from safetensors.torch import save_file

        rows = num_classes + int(null_class)
        table = torch.rand(rows, channels, image_size, image_size) * 2 - 1
        if null_class:
            table[-1] = 0
        save_file({"templates": table}, folder / "templates.safetensors")
        meta["template"] = "templates.safetensors"
    (folder / "ptgen.json").write_text(json.dumps(meta))
    return folder


def save_tiny_dit(folder: Path, num_classes: int = 10, learned_sigma: bool = True) -> Path:
    """A DiTPipeline folder (transformer/, vae/, scheduler/, model_index.json with id2label), as
    `DiTPipeline.save_pretrained` writes it: 4x4 latents of 4 channels decoded to 8x8 RGB."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(
        sample_size=4,
        patch_size=2,
        in_channels=4,
        out_channels=8 if learned_sigma else 4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_embeds_ada_norm=num_classes,
        norm_type="ada_norm_zero",
    )
    vae = tiny_vae()
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler(clip_sample=False))
    pipe.save_pretrained(folder)
    # save_pretrained does not write id2label; the hub's DiT folders carry it in model_index.json.
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["id2label"] = {str(i): f"tiny class {i}, synonym {i}" for i in range(num_classes)}
    index_path.write_text(json.dumps(index, indent=2))
    return folder


def save_tiny_biggan(folder: Path, num_classes: int = 10) -> Path:
    """A BigGAN folder as pytorch-pretrained-biggan's models are published: config.json (its
    BigGANConfig) and pytorch_model.bin (`torch.save(model.state_dict())`). 8-d noise, channel width
    4, four GenBlocks of which three upsample (4 -> 32 px), self-attention before the last."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    from pytorch_pretrained_biggan.model import BigGANBatchNorm, SelfAttn

    torch.manual_seed(0)
    # The first block takes the 16 * channel_width channels of the 4x4 seed; each block halves or keeps them.
    config = BigGANConfig(output_dim=32, z_dim=8, class_embed_dim=8, channel_width=4, num_classes=num_classes,
                          layers=[(True, 16, 8), (True, 8, 4), (True, 4, 2), (False, 2, 1)],
                          attention_layer_position=3)
    model = BigGAN(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BigGANBatchNorm):
                # Distinct statistics per truncation row, so that picking the row changes the image.
                module.running_means.normal_(0, 0.3)
                module.running_vars.uniform_(0.5, 1.5)
            elif isinstance(module, SelfAttn):
                module.gamma.fill_(1.0)  # 0 at init would leave attention out of the images
        # The package leaves the final norm's affine uninitialised (torch.Tensor(n)); a wide gain
        # spreads the images over the whole range instead of mid-grey.
        model.generator.bn.weight.fill_(2.0)
        model.generator.bn.bias.zero_()
        # Spectral norm divides each weight by u.W.v, and fresh random u, v make that estimate
        # arbitrary (near 0 blows activations up); published weights carry converged u, v. Each
        # training-mode pass runs one power iteration.
        model.train()
        for _ in range(20):
            model(torch.zeros(1, config.z_dim), torch.zeros(1, num_classes), 1.0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config.to_json_string())
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def save_tiny_sd(folder: Path, max_tokens: int = 32) -> Path:
    """A StableDiffusionPipeline folder as `save_pretrained` writes it, with diffusers' and
    transformers' own classes: a 2-layer CLIP text encoder 32 wide reading `max_tokens` tokens,
    a UNet2DConditionModel attending to it on 4x4 latents, a VAE decoding them to 8x8 RGB, SD-1.5's
    scheduler, and a CLIP tokenizer whose vocabulary is single characters (a word's last one
    marked `</w>`, as CLIP's BPE marks it) plus two merges."""
    import string

    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    symbols = string.ascii_lowercase + string.digits + ".,'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*symbols, *(s + "</w>" for s in symbols), "th", "the</w>"]:
        vocab[token] = len(vocab)
    files = folder.parent / f"{folder.name}-tokenizer-files"
    files.mkdir(parents=True, exist_ok=True)
    (files / "vocab.json").write_text(json.dumps(vocab))
    (files / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    (files / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_tokens}))
    tokenizer = CLIPTokenizer.from_pretrained(files)

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=max_tokens, projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    unet = UNet2DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = tiny_vae()
    # No output gain as in save_tiny_unet: these images already vary, and a gain would magnify the
    # float rounding that differs between batch shapes (SD's first steps magnify it 15x already)
    # until a pixel flips, where shards must be the same bytes at any --batch-size.
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1, set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder
