"""Each model family's package has one home, its module under samexp/models/: everything above
the models layer (training, evaluation, the cache, predict, the demo, export, the runner) talks to
a model through the seam (`samexp.models.seam`, `samexp.models.family`), never to
segment_anything, mobile_sam or sam2 themselves."""

from __future__ import annotations

import ast

from tests.conftest import REPO
from tests.tracking.test_one_home import modules, top_level_imports

FAMILY_PACKAGES = ("segment_anything", "mobile_sam", "sam2")

# where a family package may be imported, and why
HOMES = {
    # the families themselves
    "samexp/models/sam.py": "segment_anything's protocol",
    "samexp/models/build.py": "SAM's builders (official, tiny)",
    "samexp/models/mobile.py": "MobileSAM's builder",
    "samexp/models/sam2.py": "SAM 2.1's builders and protocol",
    # speed-ups of SAM's own ViT (its attention kernels, its encoder at another size): they
    # patch segment_anything's classes and find nothing to patch in another family's encoder
    "samexp/models/attention.py": "kernels for segment_anything's ViT attention",
    "samexp/models/resolution.py": "segment_anything's ViT at another input size",
    # the interfaces users know, kept on purpose: the Predictor is a SamPredictor (its API), the
    # automatic-mask settings are SamAutomaticMaskGenerator's signature (shared by SAM 2's)
    "samexp/predict/predictor.py": "SamPredictor's interface",
    "samexp/predict/config.py": "SamAutomaticMaskGenerator's signature as the auto.* schema",
    # a pure helper: the point grid SAM's generator prompts with
    "samexp/prompts/points.py": "segment_anything.utils.amg.build_point_grid",
}


def family_imports(tree: ast.Module) -> set[str]:
    return top_level_imports(tree) & set(FAMILY_PACKAGES)


def test_only_the_family_modules_import_a_family_package():
    outside = {path: sorted(found) for path, tree in modules()
               if (found := family_imports(tree)) and path not in HOMES}  # fmt: skip
    assert not outside, f"modules that bypass the model-family seam: {outside}"


def test_every_listed_home_still_imports_its_family():
    stale = [path for path in HOMES
             if not (REPO / path).exists() or not family_imports(ast.parse((REPO / path).read_text()))]  # fmt: skip
    assert not stale, f"drop from HOMES (no family package imported any more): {stale}"
