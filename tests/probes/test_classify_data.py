"""Bad input of ``ivnext-classify``: label and class-list errors and backbone sizes fail before training,
naming the row or the class; an unreadable video is skipped and counted like in every loader."""
import json
from dataclasses import replace

import pytest

from ivnext_world.probes.classify import BackboneInputError, LabelError, load_backbone, load_splits, run_classify

from ._classify_helpers import TINY_ENCODER, make_videos, tiny_cfg


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return make_videos(tmp_path_factory.mktemp("cls_videos"))


def test_a_label_missing_from_the_class_list_names_the_row(videos, tmp_path):
    bad = tmp_path / "train.csv"
    lines = (videos / "train.csv").read_text().splitlines()
    lines[2] = lines[2].replace("right", "upwards")  # file line 3
    bad.write_text("\n".join(lines).replace("train_", str(videos / "train_")) + "\n")
    cfg = tiny_cfg(videos, tmp_path / "run")
    cfg.data.train = str(bad)
    with pytest.raises(LabelError, match=r"train\.csv:3: label 'upwards' of the train split is not in the class list"):
        run_classify(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before training


def test_an_integer_label_outside_the_class_list_and_a_row_without_label(videos, tmp_path):
    (tmp_path / "t.csv").write_text(f"{videos / 'train_000.mp4'},0\n{videos / 'train_001.mp4'},1\n{videos / 'train_002.mp4'},7\n")
    with pytest.raises(LabelError, match=r"t\.csv:3: label 7 .* not in the class list \(2 classes"):
        load_splits({"train": str(tmp_path / "t.csv")}, str(videos / "classes.txt"))
    (tmp_path / "u.csv").write_text(f"{videos / 'train_000.mp4'},left\n{videos / 'train_001.mp4'}\n")
    with pytest.raises(LabelError, match=r"u\.csv:2: train row has no label"):
        load_splits({"train": str(tmp_path / "u.csv")}, str(videos / "classes.txt"))


def test_a_class_with_no_training_clips_names_the_class(videos, tmp_path):
    (tmp_path / "classes.txt").write_text("left\nright\nup\n")
    cfg = tiny_cfg(videos, tmp_path / "run")
    cfg.data.classes = str(tmp_path / "classes.txt")
    with pytest.raises(LabelError, match=r"class \['up'\] has no training clips"):
        run_classify(cfg)
    # without a class file the list comes from the training labels: a test-only label is then missing from it
    (tmp_path / "test.csv").write_text(f"path,label\n{videos / 'test_000.mp4'},down\n")
    with pytest.raises(LabelError, match=r"test\.csv:2: label 'down' of the test split"):
        load_splits({"train": str(videos / "train.csv"), "test": str(tmp_path / "test.csv")})


def test_a_backbone_that_cannot_take_the_clip_size_fails_naming_both(tmp_path):
    with pytest.raises(BackboneInputError, match=r"timm:vit_tiny_patch16_224.*40x40 px.*not a multiple of its 16-px patches"):
        load_backbone("timm:vit_tiny_patch16_224", num_frames=4, img_size=40)
    with pytest.raises(BackboneInputError, match=r"'random'.*3 frames are not a multiple of its 2-frame tubelets"):
        load_backbone("random", num_frames=3, img_size=32, random_model=vars(TINY_ENCODER))
    # an image model built for 32 px with a fixed position table only takes 32 px
    bb = load_backbone("timm:vit_tiny_patch16_224", num_frames=4, img_size=32, timm_kwargs={"embed_dim": 16, "depth": 1, "num_heads": 2})
    with pytest.raises(BackboneInputError, match="takes 32 px only"):
        bb.check_input(4, 48)
    # ... and the run stops before any decoding or training
    cfg = replace(tiny_cfg(tmp_path, tmp_path / "run"), backbone="timm:vit_tiny_patch16_224")
    cfg.data.resolution = 40
    with pytest.raises(BackboneInputError):
        run_classify(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unreadable_video_is_skipped_and_counted(videos, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in videos.iterdir():
        (data / f.name).symlink_to(f)
    (data / "test.csv").unlink()
    (data / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows = (videos / "test.csv").read_text().splitlines() + ["broken.mp4,left"]
    (data / "test.csv").write_text("\n".join(rows) + "\n")
    from ivnext_world.data import VideoLoadError

    with pytest.raises(VideoLoadError, match=r"1/5 items failed.*broken\.mp4"):  # the loaders' limit: 10% by default
        run_classify(tiny_cfg(data, tmp_path / "strict"))
    cfg = tiny_cfg(data, tmp_path / "run")
    cfg.data.max_failure_fraction = 0.5
    summary = run_classify(cfg)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["data"]["test"]["failures"] == {"unreadable video": 1}
    assert res["data"]["test"]["skipped"][0]["path"].endswith("broken.mp4")
    assert res["selected"]["best"]["test"]["videos"] == 4  # the 4 good test videos, each scored once
    assert 0.0 <= summary["best_top1"] <= 1.0


def test_the_probe_loads_through_the_toolkit_backbones():
    """One loader: the probe's backbone is the toolkit's (same weights), plus the frame-index embedding
    on per-frame image models and the centre frame for ``frame:``."""
    import torch

    from ivnext_world import backbones
    from ivnext_world.probes.classify.backbone import sincos_1d

    ours = load_backbone("random", num_frames=4, img_size=32, random_model=vars(TINY_ENCODER))
    same = backbones.load_backbone("random", 32, random_model=vars(TINY_ENCODER))
    assert isinstance(ours, backbones.Backbone) and ours.fingerprint() == same.fingerprint()
    kw = {"embed_dim": 16, "depth": 1, "num_heads": 2}
    frames = load_backbone("timm:vit_tiny_patch16_224", num_frames=4, img_size=32, timm_kwargs=kw)
    image = backbones.load_backbone("timm:vit_tiny_patch16_224", 32, timm_kwargs=kw)
    video = torch.randn(2, 3, 4, 32, 32)
    want = image.forward_clip(video) + sincos_1d(4, 16)[None, :, None]  # (B, T, N, D) + frame index
    assert torch.allclose(frames(video), want.flatten(1, 2), atol=1e-6) and frames.record["temporal_embed"]
    plain = load_backbone("timm:vit_tiny_patch16_224", num_frames=4, img_size=32, timm_kwargs=kw, temporal_embed=False)
    assert torch.allclose(plain(video), image(video), atol=1e-6)
    single = load_backbone("frame:timm:vit_tiny_patch16_224", num_frames=4, img_size=32, timm_kwargs=kw)
    assert single.num_tokens(4, 32) == 4 and single(video).shape == (2, 4, 16) and single.name == "frame:timm:vit_tiny_patch16_224"
    centre = image.forward_clip(video[:, :, 2:3]) + sincos_1d(1, 16)[None, :, None]  # frame 2 of 4, index 0
    assert torch.allclose(single(video), centre.flatten(1, 2), atol=1e-6)
