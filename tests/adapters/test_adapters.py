"""Invariants every adapter keeps, as a table of cases (every registered kind, built with
non-default hyperparameters) on the tiny SAM and the tiny SAM 2.1."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from samexp.adapters.adaptformer import AdaptFormerAdapter
from samexp.adapters.attention import AttentionAdapter
from samexp.adapters.base import Adapter, parameter_counts, trainable_parameters
from samexp.adapters.bitfit import BitFitAdapter
from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.dora import DoraAdapter
from samexp.adapters.fact import FactAdapter
from samexp.adapters.full import FullAdapter
from samexp.adapters.ia3 import Ia3Adapter
from samexp.adapters.io import load_adapter, save_adapter
from samexp.adapters.layernorm import LayerNormAdapter
from samexp.adapters.loha import LohaAdapter
from samexp.adapters.lokr import LokrAdapter
from samexp.adapters.lora import LoraAdapter
from samexp.adapters.registry import registered
from samexp.adapters.ssf import SsfAdapter
from samexp.adapters.vera import VeraAdapter
from samexp.config.errors import SamexpError
from samexp.models.build import build_tiny
from samexp.models.sam2 import build_sam2_tiny
from samexp.models.seam import Prompts, decode, encode, upscale

# every registered adapter, with hyperparameters other than its defaults (a reload that fell back
# to a default would show) -> the regex every trainable parameter name of the tiny SAM must match
# (and every matching name must train)
CASES = {
    "lora": (
        lambda: LoraAdapter(rank=4, alpha=6.0, dropout=0.1, qkv_parts=("q", "k", "v")),
        r"image_encoder\.blocks\.\d+\.attn\.qkv\.lora_[AB]\.\d+\.weight",
    ),
    "decoder": (lambda: DecoderAdapter(), r"mask_decoder\..*"),
    "decoder+prompt": (
        lambda: DecoderAdapter(train_prompt_encoder=True),
        r"(mask_decoder|prompt_encoder)\..*",
    ),
    "full": (lambda: FullAdapter(), r".*"),
    # hand-written (samexp/adapters/fact.py, adaptformer.py): U and V shared by width in the
    # encoder's `fact` child, one core per part; a bottleneck wrapped beside each encoder MLP
    "fact": (
        lambda: FactAdapter(rank=3, scale=0.5, dropout=0.1, qkv_parts=("q", "v"), proj=False),
        r"image_encoder\.fact\.[uv]\.\d+|image_encoder\.blocks\.\d+\.attn\.qkv\.sigma\.\d+",
    ),
    "adaptformer": (
        lambda: AdaptFormerAdapter(bottleneck=5, scale=0.5, dropout=0.1),
        r"image_encoder\.blocks\.\d+\.mlp\.(down|up)\.(weight|bias)",
    ),
    # peft-backed (samexp/adapters/peft_engine.py): each encoder attention's fused qkv, whole
    "dora": (
        lambda: DoraAdapter(rank=4, alpha=6.0, dropout=0.1),
        r"image_encoder\.blocks\.\d+\.attn\.qkv\.lora_(A|B|magnitude_vector)\.default\.weight",
    ),
    "loha": (
        lambda: LohaAdapter(rank=4, alpha=6.0, rank_dropout=0.1, module_dropout=0.05),
        r"image_encoder\.blocks\.\d+\.attn\.qkv\.hada_w[12]_[ab]\.default",
    ),
    "lokr": (
        lambda: LokrAdapter(
            rank=4, alpha=6.0, rank_dropout=0.1, module_dropout=0.05, decompose_both=True
        ),
        r"image_encoder\.blocks\.\d+\.attn\.qkv\.lokr_w[12](_[ab])?\.default",
    ),
    "ia3": (  # the MLP's second layer scaled at its input (IA3's feed-forward rule)
        lambda: Ia3Adapter(
            # SAM's, Hiera's and TinyViT's names for the attention qkv and the MLP's second layer
            target_modules=r"image_encoder\.(trunk\.|layers\.\d+\.)?blocks\.\d+\."
            r"(attn\.qkv|mlp\.(lin2|layers\.1|fc2))"
        ),
        r"image_encoder\.blocks\.\d+\.(attn\.qkv|mlp\.lin2)\.ia3_l\.default",
    ),
    "vera": (
        lambda: VeraAdapter(rank=8, dropout=0.1, d_initial=0.2, projection_seed=3),
        r"image_encoder\.blocks\.\d+\.attn\.qkv\.vera_lambda_[bd]\.default",
    ),
    "bitfit": (
        lambda: BitFitAdapter(scope="all"),
        r"(image_encoder|prompt_encoder|mask_decoder)\..*\.bias",
    ),
    "layernorm": (
        lambda: LayerNormAdapter(),
        r"image_encoder\.(blocks\.\d+\.norm[12]|neck\.[13])\.(weight|bias)",
    ),
    "attention": (
        lambda: AttentionAdapter(parts="qkv"),
        r"image_encoder\.blocks\.\d+\.attn\.qkv\.(weight|bias)",
    ),
    "attention-all": (
        lambda: AttentionAdapter(),
        r"image_encoder\.blocks\.\d+\.attn\.(rel_pos_[hw]|qkv\.(weight|bias)|proj\.(weight|bias))",
    ),
    "ssf": (
        lambda: SsfAdapter(targets=["mlp"]),
        r"image_encoder\.blocks\.\d+\.mlp\.lin[12]\.(scale|shift)",
    ),
    "ssf-attention+mlp": (
        lambda: SsfAdapter(),
        r"image_encoder\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.lin[12])\.(scale|shift)",
    ),
}
IDS = list(CASES)
# the model families every adapter works on, at test size (vit_t: tests/models/test_mobile.py)
FAMILIES = {"tiny": lambda: build_tiny(seed=0), "sam2_tiny": lambda: build_sam2_tiny(seed=0)}


def test_every_registered_adapter_is_a_case():
    kinds = {CASES[case][0]().kind for case in IDS}
    assert kinds == set(registered()) - {"bitfit_throwaway"}  # test_options' plugin, if loaded


def _forward(sam) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 3, 256, 256), generator=g, dtype=torch.uint8)
    sizes = [(256, 256), (256, 200)]
    boxes = torch.tensor([[20.0, 30, 180, 220], [5, 5, 100, 90], [60, 40, 190, 250]])
    low_res, iou = decode(
        sam, encode(sam, images, sizes), torch.tensor([0, 1, 1]), Prompts(boxes=boxes)
    )
    return upscale(sam, low_res), iou


def _train_step(sam) -> None:
    params = list(trainable_parameters(sam).values())
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    sam.train()
    for _ in range(2):  # two steps: LoRA's A only gets gradient once B is non-zero
        logits, iou = _forward(sam)
        loss = logits.sigmoid().mean() + iou.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sam.eval()


@pytest.mark.parametrize("case", IDS)
def test_adapter_trains_exactly_the_parameters_it_claims(case):
    make, pattern = CASES[case]
    base = build_tiny(seed=0)
    make().apply(base.sam)
    names = {n for n, _ in base.sam.named_parameters()}
    trainable = set(trainable_parameters(base.sam))
    assert trainable == {n for n in names if re.fullmatch(pattern, n)}
    assert trainable

    before = {n: p.detach().clone() for n, p in base.sam.named_parameters()}
    _train_step(base.sam)
    changed = {n for n, p in base.sam.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    assert changed, "nothing trained"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", IDS)
def test_adapter_starts_equal_to_the_base_model(case, family):
    reference = _forward(FAMILIES[family]().sam)[0]
    base = FAMILIES[family]()
    CASES[case][0]().apply(base.sam)
    base.sam.eval()
    assert torch.allclose(_forward(base.sam)[0], reference, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", IDS)
def test_trained_adapter_reloads_exactly_merges_and_exports_to_the_trained_output(
    case, family, tmp_path
):
    """One training per case and family, three promises about what it trained: the saved file
    reloads onto a fresh base exactly; `merge` (where the method allows it) keeps the output; and
    `plain_state_dict` is the stock model, which loaded strictly into a fresh base computes what
    the adapted model computes."""
    base = FAMILIES[family]()
    adapter: Adapter = CASES[case][0]()
    adapter.apply(base.sam)
    _train_step(base.sam)
    expected = _forward(base.sam)[0]
    path = save_adapter(tmp_path / "adapter.safetensors", base, adapter)

    fresh = FAMILIES[family]()
    reloaded = load_adapter(path, fresh)
    assert type(reloaded) is type(adapter) and reloaded.spec() == adapter.spec()
    assert torch.equal(_forward(fresh.sam)[0], expected)

    adapter.merge(base.sam)
    assert torch.allclose(_forward(base.sam)[0], expected, atol=1e-5)
    if not adapter.mergeable:
        with pytest.raises(SamexpError, match=adapter.kind):
            adapter.plain_state_dict(base.sam)
        return
    stock = FAMILIES[family]()
    stock.sam.load_state_dict(adapter.plain_state_dict(base.sam))
    assert torch.allclose(_forward(stock.sam.eval())[0], expected, atol=1e-5)


def test_saved_file_holds_only_the_trained_tensors(tmp_path):
    from safetensors.torch import load_file

    base = build_tiny(seed=0)
    adapter = LoraAdapter(rank=2)
    adapter.apply(base.sam)
    path = save_adapter(tmp_path / "a.safetensors", base, adapter)
    tensors = load_file(str(path))
    assert set(tensors) == set(trainable_parameters(base.sam))
    assert (
        sum(t.numel() for t in tensors.values()) == parameter_counts(base.sam)["params/trainable"]
    )
    assert path.with_suffix(".json").is_file()


def test_parameter_counts_report_trainable_and_total(tiny):
    DecoderAdapter().apply(tiny.sam)
    counts = parameter_counts(tiny.sam)
    assert counts["params/trainable"] == sum(p.numel() for p in tiny.sam.mask_decoder.parameters())
    assert counts["params/total"] == sum(p.numel() for p in tiny.sam.parameters())


def test_loading_onto_a_different_base_model_is_refused(tmp_path):
    from samexp.config.errors import SamexpError

    base = build_tiny(seed=0)
    adapter = LoraAdapter(rank=2)
    adapter.apply(base.sam)
    path = save_adapter(tmp_path / "a.safetensors", base, adapter)
    with pytest.raises(SamexpError, match="trained on base model tiny"):
        load_adapter(path, build_tiny(seed=1))


def test_loading_a_file_that_is_not_samexp_weights_is_a_clear_error(tmp_path):
    from samexp.config.errors import SamexpError

    garbage = tmp_path / "x.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(SamexpError, match="x.safetensors"):
        load_adapter(garbage, build_tiny())
    with pytest.raises(SamexpError, match="not found"):
        load_adapter(tmp_path / "missing.safetensors", build_tiny())


@pytest.mark.parametrize("case", IDS)
def test_every_adapter_applies_reloads_and_exports_on_mobilesam(case, vit_t_base, tmp_path):
    """MobileSAM (TinyViT encoder, 1024 px only) without a forward pass, which would cost a
    second per adapter: its trained tensors (drawn, as if trained) reload exactly with the same
    spec, and a foldable method exports strictly loadable stock weights that carry its delta."""
    base = copy.deepcopy(vit_t_base)
    adapter: Adapter = CASES[case][0]()
    adapter.apply(base.sam)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainable_parameters(base.sam).values():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    trained = {n: p.detach().clone() for n, p in trainable_parameters(base.sam).items()}
    assert trained
    path = save_adapter(tmp_path / "adapter.safetensors", base, adapter)
    fresh = copy.deepcopy(vit_t_base)
    reloaded = load_adapter(path, fresh)
    assert reloaded.spec() == adapter.spec()
    again = trainable_parameters(fresh.sam)
    assert again.keys() == trained.keys()
    assert all(torch.equal(again[n], t) for n, t in trained.items())
    if not adapter.mergeable:
        with pytest.raises(SamexpError, match=adapter.kind):
            adapter.plain_state_dict(base.sam)
        return
    state = adapter.plain_state_dict(base.sam)
    stock = copy.deepcopy(vit_t_base).sam
    before = {k: v.clone() for k, v in stock.state_dict().items()}
    stock.load_state_dict(state)  # strict: exactly the stock names
    assert any(not torch.equal(v, before[k]) for k, v in stock.state_dict().items())
