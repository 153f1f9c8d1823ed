"""``ivnext-depth predict``: any video file -> depth PNGs, point clouds, clear errors."""
import json

import numpy as np
import open3d as o3d
import pytest
from PIL import Image

from ivnext_world.cli.depth import main
from ivnext_world.data.video_io import encode_mp4
from ivnext_world.probes.depth import VideoDecodeError, predict_video

from ._helpers import scene


@pytest.fixture
def video(tmp_path):
    frames, _ = scene(6, 0)
    frames = np.concatenate([frames, frames[:, :, :8]], axis=2)  # 56 x 64: not square
    path = tmp_path / "clip.mp4"
    encode_mp4(path, frames, 10)
    return path


def test_predict_command_end_to_end(video, tiny_probe, tmp_path, capsys, no_o3d_render):
    out = tmp_path / "out"
    main(["predict", str(video), "--probe", str(tiny_probe), "--out", str(out), "--every", "2"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 3 and summary["size"] == [56, 64] and summary["intrinsics"].startswith("default: 60")
    assert sorted(p.name for p in out.glob("depth_*.png")) == ["depth_00000.png", "depth_00002.png", "depth_00004.png"]
    assert Image.open(out / "depth_00002.png").size == (64, 56)
    npz = np.load(out / "depth.npz")
    assert npz["depth"].shape == (3, 56, 64) and np.all(npz["depth"] > 0)
    assert np.allclose(npz["intrinsics"][0, 0, 0], 32 / np.tan(np.radians(30)))
    cloud = o3d.io.read_point_cloud(str(out / "cloud_00004.ply"))
    assert len(cloud.points) == 56 * 64 and cloud.has_colors()
    assert np.allclose(np.asarray(cloud.points)[:, 2], npz["depth"][2].ravel(), atol=1e-4)  # Z is the predicted depth
    assert (out / "cloud_view.png").stat().st_size > 1000


def test_undecodable_video_is_a_clear_error(tmp_path, tiny_probe):
    frames, _ = scene(8, 1)
    good = tmp_path / "good.mp4"
    encode_mp4(good, frames, 10)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(good.read_bytes()[: 200])  # truncated: the container header is cut off
    with pytest.raises(VideoDecodeError, match="cannot decode video .*broken.mp4"):
        predict_video(tiny_probe, broken, tmp_path / "o")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(VideoDecodeError, match="cannot decode video"):
        predict_video(tiny_probe, text, tmp_path / "o")


def test_cli_reports_bad_input_in_one_line(tmp_path, tiny_probe, video, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(tmp_path / "missing.mp4"), "--probe", str(tiny_probe), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "missing file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # intrinsics of a 640x480 camera on a 64x56 video
        main(["predict", str(video), "--probe", str(tiny_probe), "--out", str(tmp_path / "o"), "--intrinsics", "500,500,319.5,239.5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "do not match the 56x64 depth map" in err
    K = np.repeat(np.eye(3)[None], 4, 0)
    np.save(tmp_path / "K.npy", K)
    with pytest.raises(SystemExit) as e:
        main(["predict", str(video), "--probe", str(tiny_probe), "--out", str(tmp_path / "o"), "--intrinsics-file", str(tmp_path / "K.npy")])
    assert e.value.code == 2 and "4 intrinsics matrices for 6 frames" in capsys.readouterr().err



@pytest.fixture(scope="module")
def codec_files(tmp_path_factory):
    """AV1, HEVC, VP9, rotated, 16x16, odd-sized and truncated files (tests/data/_codec_files.py)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_codec_files", Path(__file__).parents[1] / "data" / "_codec_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("codecs")
    module.make_codec_files(root)
    return root


@pytest.mark.parametrize("name,size", [("av1.mp4", [64, 64]), ("hevc.mp4", [64, 64]), ("vp9.webm", [64, 64]),
                                       ("rot90.mp4", [48, 64]), ("tiny16.mp4", [16, 16]), ("odd97x61.mp4", [61, 97])])
def test_predict_reads_every_codec(codec_files, name, size, tiny_probe, tmp_path, no_o3d_render):
    summary = predict_video(tiny_probe, codec_files / name, tmp_path / "o", max_frames=2, write_clouds=False)
    assert summary["frames"] == 2 and summary["size"] == size  # upright size for the rotated file
    assert np.load(tmp_path / "o" / "depth.npz")["depth"].shape == (2, *size)


def test_predict_decoder_option_and_damaged_video(codec_files, tiny_probe, tmp_path, capsys, no_o3d_render):
    main(["predict", str(codec_files / "av1.mp4"), "--probe", str(tiny_probe), "--out", str(tmp_path / "o"),
          "--max-frames", "1", "--no-ply", "--decoder", "pyav"])
    assert json.loads(capsys.readouterr().out)["frames"] == 1
    with pytest.raises(VideoDecodeError, match=r"av1.mp4: .*no AV1 decoder.*decoder='auto'"):
        predict_video(tiny_probe, codec_files / "av1.mp4", tmp_path / "o", decoder="decord")
    # Cut inside frame 12: the error names the file and the frame, after frames 0-11 decoded.
    with pytest.raises(VideoDecodeError, match=r"cannot decode video .*truncated.mp4: decode error: .*frame 12"):
        predict_video(tiny_probe, codec_files / "truncated.mp4", tmp_path / "o", write_clouds=False, chunk=4)
