"""Build a SAM 3 checkpoint with random weights, in transformers format, offline.

The folder it writes has the layout of ``facebook/sam3`` on the Hugging Face hub: one
``sam3_video`` configuration holding the detector (``Sam3Model``) and the tracker
(``Sam3TrackerModel``), their weights in ``model.safetensors``, and the processor
(image processor and a CLIP tokenizer). The tests load it through the very code path
a real checkpoint takes; the benchmark builds the full-size one (speed does not depend
on the weights' values).

``tiny`` sizes keep every shape small (a 112-pixel input, two ViT layers, ten queries)
so a forward pass takes milliseconds on a CPU. The tokenizer is byte-level BPE over a
small vocabulary, so any text can be tokenized without the real CLIP vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The input edge of the tiny model, in pixels (8 patches of 14).
TINY_IMAGE_SIZE = 112


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table, which CLIP's byte-level BPE uses."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def tokenizer_files(folder: Path, words: tuple[str, ...] = ("tree", "water", "building")) -> None:
    """Write ``vocab.json`` and ``merges.txt`` of a small CLIP byte-level BPE vocabulary:
    every byte (alone and word-final) plus merges that spell ``words``."""
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n", encoding="utf-8"
    )


def tiny_configs() -> dict[str, Any]:
    """Keyword arguments of a ``Sam3VideoConfig`` with every size small."""
    size, patch = TINY_IMAGE_SIZE, 14
    grid = size // patch
    vit = {
        "model_type": "sam3_vit_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": size,
        "patch_size": patch,
        "window_size": grid // 2,
        "global_attn_indexes": [1],
        "pretrain_image_size": size,
    }
    feature_sizes = [[grid * 4, grid * 4], [grid * 2, grid * 2], [grid, grid]]
    vision = {
        "model_type": "sam3_vision_model",
        "backbone_config": vit,
        "fpn_hidden_size": 32,
        "backbone_feature_sizes": feature_sizes,
    }
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    detector = {
        "model_type": "sam3",
        "vision_config": vision,
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": 1000,
            "hidden_size": 32,
            "intermediate_size": 64,
            "projection_dim": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
        },
        "geometry_encoder_config": {**small, "num_layers": 1, "roi_size": 3},
        "detr_encoder_config": {**small, "num_layers": 1},
        "detr_decoder_config": {**small, "num_layers": 1, "num_queries": 10},
        "mask_decoder_config": {"hidden_size": 32, "num_attention_heads": 2},
    }
    tracker = {
        "model_type": "sam3_tracker_video",
        "vision_config": vision,
        "prompt_encoder_config": {"hidden_size": 32, "image_size": size, "patch_size": patch},
        "mask_decoder_config": {
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
        "memory_attention_hidden_size": 32,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_encoder_hidden_size": 32,
        "memory_encoder_output_channels": 16,
        "mask_downsampler_embed_dim": 32,
        "memory_fuser_embed_dim": 32,
        "memory_fuser_intermediate_dim": 64,
        "memory_fuser_num_layers": 1,
    }
    return {"detector_config": detector, "tracker_config": tracker}


def build_checkpoint(
    folder: Path, *, tiny: bool = True, seed: int = 0, tracker: bool = True
) -> Path:
    """Write a randomly initialised SAM 3 checkpoint (detector, tracker, processor) to
    ``folder`` with ``save_pretrained``; return ``folder``.

    Args:
        folder: where to write (created).
        tiny: small sizes (tests) or the real architecture (benchmarks, ~3.4 GB).
        seed: torch's seed for the random weights.
        tracker: False writes a detector-only checkpoint (``model_type: sam3``).
    """
    import torch
    from safetensors.torch import save_file
    from transformers import Sam3VideoConfig, Sam3VideoModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if tiny:
        config = Sam3VideoConfig(**tiny_configs())
        # The tracker's configuration defaults its sizes to 1008 pixels; the setter
        # sets the input size everywhere (both vision encoders, the prompt encoder).
        config.image_size = TINY_IMAGE_SIZE
    else:
        config = Sam3VideoConfig()
    if not tracker:
        from transformers import Sam3Model

        config = config.detector_config
        Sam3Model(config).eval().save_pretrained(folder)
        vit = config.vision_config.backbone_config
        return _with_processor(folder, vit.image_size, vit.image_size // vit.patch_size * 4)
    model = Sam3VideoModel(config).eval()
    model.save_pretrained(folder)
    # transformers 5.x writes this composite's tracker weights with the tracker's
    # renaming applied in reverse a second time ("tracker_model.tracker_model.*"), a
    # layout no published checkpoint has. The weights are written again under the
    # module names, which is the layout of facebook/sam3 ("detector_model.*",
    # "tracker_model.*", "tracker_neck.*"), so the tests load what users download.
    for stale in folder.glob("model*.safetensors*"):
        stale.unlink()
    state = model.state_dict()
    weights = {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    del model, state, weights
    size = config.detector_config.vision_config.backbone_config.image_size
    side = config.tracker_config.prompt_encoder_config.image_size // 14 * 4
    return _with_processor(folder, size, side)


def _with_processor(folder: Path, size: int, mask_side: int) -> Path:
    """Write the processor (image processor and tokenizer) of an input edge ``size``."""
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Processor

    tokenizer_files(folder)
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    image_processor = Sam3ImageProcessor(
        size={"height": size, "width": size},
        mask_size={"height": mask_side, "width": mask_side},
    )
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
