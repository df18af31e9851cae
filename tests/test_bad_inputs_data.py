"""Bad input to the UBnormal and ShanghaiTech loaders on the long fixture trees: one-line errors
naming the file and the problem; with strict=False the item is skipped and counted."""

from __future__ import annotations

import shutil

import pytest

from tvad.data import DataError, shanghaitech, ubnormal
from tests.paper_fixtures import SHANGHAITECH_VIDEOS, UBNORMAL_VIDEOS, write_shanghaitech_tree, write_ubnormal_tree

UB_TEST = [v for v in UBNORMAL_VIDEOS if v.split == "test"]
ST_TEST = [v for v in SHANGHAITECH_VIDEOS if v.split == "test"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs_data")
    return write_ubnormal_tree(root / "ub", UB_TEST).root, write_shanghaitech_tree(root / "st", ST_TEST).root


@pytest.fixture()
def ub(written, tmp_path):
    return shutil.copytree(written[0], tmp_path / "ub")


@pytest.fixture()
def st(written, tmp_path):
    return shutil.copytree(written[1], tmp_path / "st")


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("case", ["listed_not_written", "mp4_deleted"])
def test_ubnormal_split_file_naming_a_missing_video(ub, case):
    split_file = ub / "scripts" / "abnormal_test_video_names.txt"
    if case == "listed_not_written":
        missing = "abnormal_scene_9_scenario_7"
        split_file.write_text(split_file.read_text() + missing + "\n")
    else:
        missing = UB_TEST[1].name
        (ub / "Scene5" / f"{missing}.mp4").unlink()
    with pytest.raises(DataError) as e:
        ubnormal.load(ub, "test")
    msg = _one_line(e)
    assert msg.startswith(f"{split_file}: lists video {missing!r}: no such video file ") and f"{missing}.mp4" in msg
    vids = ubnormal.load(ub, "test", strict=False)
    assert missing not in [v.name for v in vids] and len(vids) == len(UB_TEST) - (case == "mp4_deleted")
    assert len(vids.skipped) == 1 and vids.skipped[0].item == missing and vids.skipped[0].path == str(split_file)
    assert vids.report().startswith(f"skipped {missing}: {split_file}: lists video {missing!r}")


def test_ubnormal_split_file_with_a_malformed_name(ub):
    split_file = ub / "scripts" / "normal_test_video_names.txt"
    split_file.write_text(split_file.read_text() + "video_3\n")
    with pytest.raises(DataError) as e:
        ubnormal.load(ub, "test")
    msg = _one_line(e)
    assert msg.startswith(f"{split_file}: lists video_3: not a UBnormal video name")
    vids = ubnormal.load(ub, "test", strict=False)
    assert len(vids) == len(UB_TEST) and [s.item for s in vids.skipped] == ["video_3"]


@pytest.mark.parametrize("which", ["test_pixel_mask", "test_frame_mask"])
def test_shanghaitech_test_video_without_its_mask(st, which):
    name = ST_TEST[1].name
    npy = st / "testing" / which / f"{name}.npy"
    npy.unlink()
    with pytest.raises(DataError) as e:
        shanghaitech.load(st, "test")
    msg = _one_line(e)
    kind = "pixel" if which == "test_pixel_mask" else "frame"
    assert msg.startswith(f"{npy}: missing {kind} mask of test video {name} ")
    vids = shanghaitech.load(st, "test", strict=False)
    assert [v.name for v in vids] == [v.name for v in ST_TEST if v.name != name]
    assert len(vids.skipped) == 1 and vids.skipped[0].item == name and vids.skipped[0].path == str(npy)


def test_shanghaitech_missing_training_videos_folder(st):
    shutil.rmtree(st / "training" / "videos")
    with pytest.raises(DataError) as e:
        shanghaitech.load(st, "train")
    assert _one_line(e) == f"{st / 'training' / 'videos'}: missing training videos folder"
