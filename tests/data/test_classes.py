"""Specifications for label-map class lists: the formats detected from their content (colour
tables too), the default file found in the root or its split folders, and the warnings for
targets that look wrong."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from samexp.config.errors import DatasetError
from samexp.data.classes import find_classes_file, label_classes, read_class_table, read_classes
from samexp.data.frame import Pipeline
from samexp.data.labelmap import labelmap_splits
from tests.data.test_labelmap import LAYOUT, write_labelmap

NAMES = ["cat", "dog", "bird"]  # ids 1, 2, 3 in every fixture's label maps


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The label-map fixture with its class list removed: each test writes the one it needs."""
    write_labelmap(tmp_path, {"train": LAYOUT, "test": {"t1": (1, 2, 3), "t2": (2,)}})
    (tmp_path / "classes.txt").unlink()
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The class list's warnings (an image without targets warns on its own)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "samexp.data.classes"
    ]


def categories(root: Path, **kwargs) -> set[str]:
    splits = labelmap_splits("pets", str(root), pipeline=Pipeline(64), **kwargs)
    return {c for sample in splits.train for c in sample.categories}


# --- the three formats -------------------------------------------------------------------------


def test_class_names_txt_gives_ids_by_line_number(root: Path) -> None:
    write(root / "class_names.txt", "_background_\ncat\ndog\nbird\n")
    assert read_classes(root / "class_names.txt") == {
        0: "_background_",
        1: "cat",
        2: "dog",
        3: "bird",
    }
    assert categories(root) == set(NAMES)  # found without being named; 0 is the background


def test_labelme_labels_txt_starting_with_ignore_numbers_ids_from_the_next_line(root: Path) -> None:
    # labelme's labels.txt: __ignore__ is -1 (255 in its 8-bit PNGs), _background_ 0
    write(root / "labels.txt", "__ignore__\n_background_\ncat\ndog\nbird")
    assert read_classes(root / "labels.txt") == {0: "_background_", 1: "cat", 2: "dog", 3: "bird"}
    assert categories(root, classes_file="labels.txt") == set(NAMES)  # 255 borders: ignored


def test_roboflow_classes_csv_gives_pixel_values_with_or_without_spaces(root: Path) -> None:
    write(root / "_classes.csv", "Pixel Value, Class\n0, background\n1, cat\n2,dog\n3,  bird\n")
    assert read_classes(root / "_classes.csv") == {0: "background", 1: "cat", 2: "dog", 3: "bird"}
    assert categories(root) == set(NAMES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# VOC\n0 background\n\n1 tabby cat  # striped\n", {0: "background", 1: "tabby cat"}),
        ("background\ntabby cat\n\n\n", {0: "background", 1: "tabby cat"}),
        (
            '\ufeffpixel value,CLASS\n0,background\n1,"tabby cat"\n',
            {0: "background", 1: "tabby cat"},
        ),
        ("3d model\n7 up\n", None),  # a bare name first: one name per line, so `7 up` is refused
    ],
    ids=["id-name", "names", "csv-any-case-with-bom", "names-first-decides"],
)
def test_the_format_is_decided_by_the_first_line_not_the_file_name(
    tmp_path: Path, text: str, expected: dict[int, str] | None
) -> None:
    path = write(tmp_path / "list.txt", text)
    if expected is None:
        with pytest.raises(DatasetError, match="line 2: '7 up' looks like an id and a name"):
            read_classes(path)
    else:
        assert read_classes(path) == expected


@pytest.mark.parametrize(
    ("text", "names", "colours"),
    [
        (
            "# label:color_rgb:parts:actions\nbackground:0,0,0::\ntabby cat:250,50,83::\n"
            "dog:61,61,245:head,tail:\n",
            {0: "background", 1: "tabby cat", 2: "dog"},
            {(0, 0, 0): 0, (250, 50, 83): 1, (61, 61, 245): 2},
        ),
        (
            "name,r,g,b\nSky,128,128,128\nCar,64,0,128\n",
            {0: "Sky", 1: "Car"},
            {(128, 128, 128): 0, (64, 0, 128): 1},
        ),
        ("0 background\n1 cat\n", {0: "background", 1: "cat"}, None),  # ids, no colours
    ],
    ids=["cvat-labelmap", "camvid-class-dict", "id-name"],
)
def test_a_colour_table_gives_each_colour_its_row_as_id(
    tmp_path: Path, text: str, names: dict[int, str], colours: dict | None
) -> None:
    assert read_class_table(write(tmp_path / "list.txt", text)) == (names, colours)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("background:0,0,0::\ncat:250,50::\n", r"line 2: expected `name:r,g,b::`"),
        ("background:0,0,0::\ncat:0,0,0::\n", r"line 2: colour \(0, 0, 0\) of 'cat' is also 'background'"),
        ("background:0,0,0::\ncat:256,0,0::\n", r"line 2: colour \(256, 0, 0\) is not 8-bit"),
        ("name,r,g,b\nSky,128,128\n", r"line 2: expected `name,r,g,b`"),
    ],
)  # fmt: skip
def test_a_bad_colour_table_is_one_line_naming_the_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        read_class_table(write(tmp_path / "labelmap.txt", text))


# --- which file ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["classes.txt", "class_names.txt", "_classes.csv", "labelmap.txt", "class_dict.csv"]
)
def test_the_one_default_class_list_in_the_root_is_used(tmp_path: Path, name: str) -> None:
    write(tmp_path / name, "Pixel Value, Class\n1, cat\n" if name.endswith(".csv") else "1 cat\n")
    write(tmp_path / "train" / "_classes.csv", "Pixel Value, Class\n")  # only the root counts
    assert find_classes_file(tmp_path, None) == tmp_path / name


def test_a_class_list_every_split_folder_holds_alike_is_used(tmp_path: Path) -> None:
    """Roboflow's semantic-mask export writes the same `_classes.csv` into each split folder."""
    for split in ("train", "valid", "test"):
        write(tmp_path / split / "_classes.csv", "Pixel Value, Class\n0, background\n1, cat\n")
    assert find_classes_file(tmp_path, None) == tmp_path / "test" / "_classes.csv"


def test_split_folders_holding_different_class_lists_are_an_error_naming_them(
    tmp_path: Path,
) -> None:
    write(tmp_path / "train" / "_classes.csv", "Pixel Value, Class\n1, cat\n")
    write(tmp_path / "valid" / "_classes.csv", "Pixel Value, Class\n1, dog\n")
    with pytest.raises(DatasetError, match="different class lists .train/_classes.csv, "
                                           "valid/_classes.csv.; .* dataset.classes_file="):  # fmt: skip
        find_classes_file(tmp_path, None)


def test_several_default_class_lists_are_an_error_asking_to_choose_one(tmp_path: Path) -> None:
    write(tmp_path / "classes.txt", "1 cat\n")
    write(tmp_path / "class_names.txt", "_background_\ncat\n")
    with pytest.raises(DatasetError, match="several class lists") as err:
        find_classes_file(tmp_path, None)
    assert "classes.txt and class_names.txt" in str(err.value)
    assert "dataset.classes_file=" in str(err.value)


def test_classes_file_may_name_any_format_anywhere_under_the_root(root: Path) -> None:
    write(root / "meta" / "pets.csv", "Pixel Value,Class\n0,background\n1,cat\n2,dog\n3,bird\n")
    write(root / "classes.txt", "0 unused\n")  # named files win over the defaults
    assert categories(root, classes_file="meta/pets.csv") == set(NAMES)


def test_a_missing_named_classes_file_is_an_error_naming_it_and_the_option(root: Path) -> None:
    with pytest.raises(DatasetError, match=r"classes file .*nope.txt does not exist; fix dataset"):
        label_classes(root, "nope.txt")


# --- what users get wrong ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("class_names.txt", "_background_\ncat\n\ndog\n", r"class_names.txt, line 3 is blank"),
        ("class_names.txt", "# pets\ncat\n", r"class_names.txt, line 1 is a comment"),
        ("class_names.txt", "cat\ndog\ncat\n", r"line 3: class name 'cat' is listed twice"),
        ("classes.txt", "background\n1,cat\n", r"line 2: '1,cat' looks like an id and a name"),
        ("_classes.csv", "0, background\n1, cat\n", r"_classes.csv: a CSV class list starts with"),
        ("_classes.csv", "Pixel Value, Class\n0, background\ncat, 1\n", r"csv, line 3: expected"),
        ("_classes.csv", "Pixel Value, Class\n1, cat\n1, dog\n", r"line 3: id 1 is listed twice"),
        ("_classes.csv", "Pixel Value, Class\n70000, cat\n", r"line 2: id 70000 does not fit"),
        ("_classes.csv", "Pixel Value, Class\n", r"_classes.csv lists no classes"),
    ],
)
def test_a_bad_class_list_is_one_line_naming_the_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(DatasetError, match=message) as err:
        read_classes(write(tmp_path / name, text))
    assert "\n" not in str(err.value)


def test_a_class_list_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_bytes(b"0 background\n1 caf\xe9\n")
    with pytest.raises(DatasetError, match=r"classes.txt: cannot be read as UTF-8"):
        read_classes(tmp_path / "classes.txt")


# --- warnings about the targets ------------------------------------------------------------------


def test_default_background_id_naming_a_class_warns_once_with_the_override(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(root / "classes.txt", "0 Sky\n1 cat\n2 dog\n3 bird\n")  # CamVid: 0 is a class
    with caplog.at_level(logging.WARNING):
        labelmap_splits("camvid", str(root), pipeline=Pipeline(64))  # train and test: one warning
    (warning,) = warnings_of(caplog)
    assert "leaves out class 0 'Sky'" in warning and "dataset.background_ids=[]" in warning


def test_background_ids_set_explicitly_are_not_second_guessed(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(root / "classes.txt", "0 Sky\n1 cat\n2 dog\n3 bird\n")
    with caplog.at_level(logging.WARNING):
        label_classes(root, background_ids=[0])
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("name", ["void", "Unlabelled", "un_labeled", "IGNORE", "Back ground"])
def test_a_void_class_that_would_be_a_target_warns_with_the_override_that_drops_it(
    root: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    write(root / "classes.txt", f"0 background\n1 cat\n2 dog\n3 bird\n4 {name}\n")
    with caplog.at_level(logging.WARNING):
        classes = label_classes(root)
    assert classes.targets[4] == name  # a warning, not a decision
    (warning,) = warnings_of(caplog)
    assert f"class 4 {name!r} will be segmented" in warning
    assert "dataset.background_ids=[0, 4]" in warning


def test_both_warnings_name_the_same_override(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(root / "classes.txt", "0 Sky\n1 cat\n2 dog\n3 bird\n11 Void\n")  # CamVid's 11 classes
    with caplog.at_level(logging.WARNING):
        label_classes(root)
    warnings = warnings_of(caplog)
    assert len(warnings) == 2
    assert all("dataset.background_ids=[11]" in w for w in warnings)


def test_labelme_background_and_ignored_void_give_no_warning(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(root / "classes.txt", "0 _background_\n1 cat\n2 dog\n3 bird\n255 void\n")
    with caplog.at_level(logging.WARNING):
        classes = label_classes(root)  # 0: background by default, 255: ignore_index
    assert warnings_of(caplog) == [] and sorted(classes.targets) == [1, 2, 3]
