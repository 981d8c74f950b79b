"""Bad input through the `fer-ros` entry points, by class: every case is a real file made broken here (cut,
flipped, mislabelled, of the wrong type) from a good one, and each must end with the documented exit status and
one line that says what, where, why and what to do.

Exit status: 0 all done, 1 done with skipped items, 2 nothing done (bad input, missing dependency, error).
"""

import dataclasses
import gzip
import importlib.util
import io
import json
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import FACES, FER2013, ROOT, VIDEOS, YUNET, need, need_module, write_fer_csv

from fer_ros import cli
from fer_ros.cli import main
from fer_ros.config import DEFAULTS_FILE, PipelineConfig, load_config
from fer_ros.errors import DataError, FerRosWarning, ImageError
from fer_ros.pipeline import Pipeline
from fer_ros.vision.encodings import MAX_SIDE, decode_compressed, image_to_bgr

PT_MODEL = ROOT / "fer_ros" / "weights" / "fer2013_arch1.pt"
PHOTO = FACES / "single_face.jpg"
CLIP = VIDEOS / "pyfeat_single_face.mp4"  # 72 frames, 640x360


def cli_run(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `fer-ros ARGS` run in this process (argparse errors included)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str, command: str, *words: str, alone: bool = True) -> str:
    """The error line of stderr: one line `fer-ros COMMAND: error: ...` holding `words`; `alone`: and nothing
    else on stderr (the error came before any work)."""
    lines = err.strip().splitlines()
    line = lines[-1] if lines else ""
    assert line.startswith(f"fer-ros {command}: error: "), err
    if alone:
        assert len(lines) == 1, err
    for word in words:
        assert word in line, line
    return line


# ---- real good files, for the tests to break --------------------------------------------------------------------

@pytest.fixture
def good_csv(tmp_path) -> Path:
    """The first 60 rows of the real FER2013 CSV (synthetic rows in FER2013's format when ../shared is absent)."""
    path = tmp_path / "good.csv"
    if FER2013.is_file():
        with gzip.open(FER2013, "rt") as f:
            path.write_text("".join(f.readline() for _ in range(61)))
    else:
        write_fer_csv(path, [i % 7 for i in range(60)], ["PublicTest"] * 60)
    return path


def with_lines(params: str, *lines: str) -> str:
    """A parameters file's text with `lines` added at the top of its (first) ros__parameters section."""
    assert "  ros__parameters:\n" in params
    return params.replace("  ros__parameters:\n", "  ros__parameters:\n" + "".join(f"{x}\n" for x in lines), 1)


def cut(data: bytes, share: float = 0.5) -> bytes:
    return data[:int(len(data) * share)]


def faststart(data: bytes) -> bytes:
    """An MP4 with its moov atom moved before the media data (a streamable file), chunk offsets shifted to match:
    cut, it still opens and declares its whole frame count."""
    atoms, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big") or len(data) - i
        atoms.append((data[i + 4:i + 8], i, i + size))
        i += size
    (_, start, end), = [a for a in atoms if a[0] == b"moov"]
    moov = bytearray(data[start:end])

    def shift(a, b):
        j = a
        while j + 8 <= b:
            size, kind = int.from_bytes(moov[j:j + 4], "big"), bytes(moov[j + 4:j + 8])
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                shift(j + 8, j + size)
            elif kind in (b"stco", b"co64"):
                width = 4 if kind == b"stco" else 8
                for k in range(int.from_bytes(moov[j + 12:j + 16], "big")):
                    o = j + 16 + k * width
                    moov[o:o + width] = (int.from_bytes(moov[o:o + width], "big") + len(moov)).to_bytes(width, "big")
            j += size
    shift(8, len(moov))
    return b"".join([*(data[s:e] for k, s, e in atoms if k == b"ftyp"), bytes(moov),
                     *(data[s:e] for k, s, e in atoms if k not in (b"ftyp", b"moov"))])


def mjpg_avi(path: Path) -> Path:
    """The real clip re-encoded as MJPG in an AVI (its index at the end, its frame count in the header)."""
    cap = cv2.VideoCapture(str(need(CLIP)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    return path


def png_claiming(path: Path, width: int, height: int) -> Path:
    """The real photo as a PNG whose header (CRC fixed) claims `width` x `height`: a small file that would
    decode to a huge image."""
    png = bytearray(cv2.imencode(".png", cv2.imread(str(need(PHOTO))))[1].tobytes())
    png[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(png))
    return path


# ---- one helper turns whatever stopped a command into one line ----------------------------------------------------

def test_error_line_for_each_kind_of_exception():
    cases = [(DataError("x.csv: row 2: bad pixels"), "x.csv: row 2: bad pixels"),
             (FileNotFoundError(2, "No such file or directory", "out/x.png"), "out/x.png: No such file or directory"),
             (ModuleNotFoundError("No module named 'torch'", name="torch"), "pip install 'fer_ros[train]'"),
             (ModuleNotFoundError("No module named 'rosbags'", name="rosbags"), "pip install 'fer_ros[bag]'"),
             (ValueError("bad\nthing"), "unexpected ValueError: bad thing")]
    for err, words in cases:
        line, code = cli.error_line("evaluate", err)
        assert code == cli.EXIT_FAILED and line.startswith("fer-ros evaluate: error: ") and words in line, line
        assert "\n" not in line
    assert cli.error_line("infer", KeyboardInterrupt()) == ("fer-ros infer: interrupted", 130)


def test_a_new_command_gets_the_one_line_error_for_free(capsys, monkeypatch):
    module = type(sys)("fer_ros_test_command")
    module.add_arguments = lambda p: p.add_argument("path")

    def run(args):
        raise DataError(f"{args.path}: row 3: not a row\n(detail on a second line)")
    module.run = run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "frobnicate", (module.__name__, "a command added later"))
    code, out, err = cli_run(capsys, "frobnicate", "x.csv")
    assert code == 2 and out == ""
    assert error_line(err, "frobnicate") == ("fer-ros frobnicate: error: x.csv: row 3: not a row "
                                             "(detail on a second line)")
    code, _, err = cli_run(capsys, "frobnicate")  # an argparse error: one line too, usage is one --help away
    assert code == 2 and "the following arguments are required: path" in error_line(err, "frobnicate")


def test_readme_documents_the_exit_status():
    text = (ROOT / "README.md").read_text()
    assert "Exit status: **0** all done; **1** done, but some items were skipped" in text
    assert "**2** nothing done" in text


# ---- compressed or encoded input that is not what its name says ----------------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda good, tmp: (tmp / "plain.csv.gz", good.read_bytes()), "named .gz but not gzip-compressed"),
    (lambda good, tmp: (tmp / "cut.csv.gz", cut(gzip.compress(good.read_bytes()))), "the gzip data is cut short"),
    (lambda good, tmp: (tmp / "flipped.csv.gz", (lambda z: z[:len(z) // 2] + bytes(b ^ 0xFF for b in z[len(z) // 2:
                        len(z) // 2 + 64]) + z[len(z) // 2 + 64:])(gzip.compress(good.read_bytes()))),
     "the gzip data is damaged"),
    (lambda good, tmp: (tmp / "packed.csv", gzip.compress(good.read_bytes())), "gzip-compressed but not named .gz"),
    (lambda good, tmp: (tmp / "model.csv", (ROOT / "fer_ros" / "weights" / "fer2013_arch1.onnx").read_bytes()),
     "not a text CSV"),
])
def test_csv_that_is_not_what_its_name_says(capsys, tmp_path, onnx_model, good_csv, make, words):
    path, data = make(good_csv, tmp_path)
    path.write_bytes(data)
    code, out, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", path)
    assert code == 2 and out == ""
    error_line(err, "evaluate", str(path), words)


@pytest.mark.parametrize("row", [0, 37])
def test_a_non_numeric_pixel_is_a_bad_row_like_any_other(capsys, tmp_path, onnx_model, good_csv, row):
    lines = good_csv.read_text().splitlines()
    label, pixels, usage = lines[row + 1].split(",")
    values = pixels.split()
    values[100] = "12x"
    lines[row + 1] = ",".join([label, " ".join(values), usage])
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    code, out, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", bad)
    assert code == 2
    error_line(err, "evaluate", f"row {row + 2}: bad pixels", "--skip-bad")
    code, out, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", bad, "--skip-bad", "--json")
    assert code == 1, err  # done, one row skipped
    report = json.loads(out.strip().splitlines()[-1])
    assert report["skipped"] == {"bad pixels": 1} and report["n"] == 59


def test_binary_or_broken_yaml_configs_are_one_line(capsys, tmp_path):
    photo = need(PHOTO)
    binary = tmp_path / "weights.yaml"
    binary.write_bytes((ROOT / "fer_ros" / "weights" / "fer2013_arch1.onnx").read_bytes())
    code, _, err = cli_run(capsys, "infer", photo, "--config", binary)
    assert code == 2
    error_line(err, "infer", str(binary), "not text", "binary")
    broken = tmp_path / "fer.yaml"  # the shipped parameters with one key pushed out of line
    broken.write_text(with_lines(DEFAULTS_FILE.read_text(), "    detector: haar", "  oops: [1"))
    code, _, err = cli_run(capsys, "infer", photo, "--config", broken)
    assert code == 2
    error_line(err, "infer", str(broken), "not valid YAML: line", "column")


# ---- training options: --set and options checked exactly like config keys, before any work ----------------------

@pytest.mark.parametrize("args, words", [
    (["--set", "lrr=0.1"], "override lrr=0.1: unknown config keys ['lrr'] (did you mean 'lr'?)"),
    (["--set", "dropout=1.5"], "dropout must be within 0.0..0.95, not 1.5"),
    (["--set", "epochs=-3"], "epochs must be within 1..100000, not -3"),
    (["--set", "batch_size=0"], "batch_size must be within 1..65536, not 0"),
    (["--set", "photometric=2"], "photometric must be within 0.0..1.0"),
    (["--set", "lr=.nan"], "lr must be within"),
    (["--set", "lr=abc"], "lr must be float, not 'abc'"),
    (["--set", "epochs=2.5"], "epochs must be int"),
    (["--set", "optimizer=sgdd"], "optimizer must be one of sgd, adam, adamw"),
    (["--set", "="], "--set =: write KEY=VALUE"),
    (["--set", "lr="], "--set lr=: no value"),
    (["--set", "lr"], "--set lr: write KEY=VALUE"),
    (["--set", "lr=[1"], "--set lr=[1: the value is not YAML"),
    (["--epochs", "-3"], "override epochs=-3: epochs must be within 1..100000"),
    (["--max-rows", "-1"], "max_rows must be within"),
])
def test_bad_training_options_stop_before_any_work(capsys, tmp_path, args, words):
    need_module("torch", "fer-ros train imports it")
    config = tmp_path / "c.yaml"
    config.write_text("data: /nonexistent/fer2013.csv.gz\nepochs: 1\n")  # the options fail first, not the data
    code, out, err = cli_run(capsys, "train", "--config", config, "--out", tmp_path / "run", *args)
    assert code == 2 and out == "" and not (tmp_path / "run").exists()
    error_line(err, "train", words)


def test_config_file_keys_and_ranges(capsys, tmp_path):
    need_module("torch", "fer-ros train imports it")
    from fer_ros.learning.train import TrainConfig

    real = ROOT / "training" / "configs" / "paper.yaml"
    typo = tmp_path / "typo.yaml"
    typo.write_text(real.read_text().replace("dropout:", "dropuot:"))
    code, _, err = cli_run(capsys, "train", "--config", typo)
    assert code == 2
    error_line(err, "train", str(typo), "unknown config keys ['dropuot'] (did you mean 'dropout'?)")
    not_yaml = tmp_path / "notes.yaml"
    not_yaml.write_text((ROOT / "README.md").read_text())
    code, _, err = cli_run(capsys, "train", "--config", not_yaml)
    assert code == 2
    error_line(err, "train", str(not_yaml), "line", "column")

    @dataclasses.dataclass
    class WithNewField(TrainConfig):  # a field added later declares its range in its metadata
        sharpen: float = dataclasses.field(default=0.0, metadata={"range": (0.0, 1.0)})

    with pytest.raises(DataError, match=r"override sharpen=1.5: sharpen must be within 0.0..1.0"):
        WithNewField.from_yaml(real, sharpen=1.5)
    assert WithNewField.from_yaml(real, sharpen=0.5).sharpen == 0.5


def test_training_paths_are_checked_before_loading(capsys, tmp_path, good_csv):
    need_module("torch", "fer-ros train imports it")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {good_csv}\nepochs: 1\ninit_from: {tmp_path / 'absent.pt'}\n")
    code, _, err = cli_run(capsys, "train", "--config", config, "--out", tmp_path / "run")
    assert code == 2
    error_line(err, "train", "init_from", "absent.pt: no such file")
    config.write_text(f"data: {good_csv}\nepochs: 1\n")
    code, _, err = cli_run(capsys, "train", "--config", config, "--out", tmp_path / "run", "--resume")
    assert code == 2
    error_line(err, "train", "--resume", "last.pt does not exist")
    (tmp_path / "file").write_text("")
    code, _, err = cli_run(capsys, "train", "--config", config, "--out", tmp_path / "file")
    assert code == 2
    error_line(err, "train", "--out", "is a file")


# ---- output paths: checked before any work ----------------------------------------------------------------------

def test_output_paths_of_infer(capsys, tmp_path, onnx_model):
    photo, clip = need(PHOTO), need(CLIP)
    cases = [([photo, "--save", tmp_path / "out.txt"], "suffix '.txt', but this writes an image file"),
             ([clip, "--save", tmp_path / "out.jpg"], "suffix '.jpg', but this writes a video file (the input is a"),
             ([photo, "--save", tmp_path / "out.mp4"], "but this writes an image file (the input is an image)"),
             ([photo, "--save", photo], "that is an input of this command"),
             ([photo, "--save", tmp_path / "missing" / "out.jpg"], "does not exist; create it first"),
             ([photo, "--save", "/proc/out.jpg"], "cannot write in /proc"),
             ([clip, "--save", tmp_path], "is a folder, not a video file")]
    for args, words in cases:
        code, out, err = cli_run(capsys, "infer", *args, "--model", onnx_model)
        assert code == 2 and out == "", args  # nothing was processed
        error_line(err, "infer", words)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_paths_of_evaluate_replay_and_bag(capsys, tmp_path, onnx_model, good_csv):
    code, _, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", good_csv, "--confusion",
                           tmp_path / "cm.txt")
    assert code == 2
    error_line(err, "evaluate", "--confusion", "suffix '.txt', but this writes a plot file", ".png")
    code, _, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", good_csv, "--confusion", good_csv)
    assert code == 2
    error_line(err, "evaluate", "that is an input")
    need_module("rosbags", "bags")
    (tmp_path / "taken").mkdir()
    (tmp_path / "a_file").write_text("x")
    bag = tmp_path / "in_bag"  # absent: the outputs are checked before the bag is opened
    for args, words in [(["--video", tmp_path / "a.gif"], "--video"), (["--out", tmp_path / "taken"], "exists"),
                        (["--report", tmp_path / "a_file"], "--report"),
                        (["--video", tmp_path / "taken"], "is a folder"), (["--video", bag], "that is an input")]:
        code, out, err = cli_run(capsys, "replay", bag, "--model", onnx_model, *args)
        assert code == 2 and out == "", args
        error_line(err, "replay", words)
    code, _, err = cli_run(capsys, "bag", "from-video", need(CLIP), tmp_path / "taken")
    assert code == 2
    error_line(err, "bag from-video", "exists; remove it")


# ---- a runtime install without torch ----------------------------------------------------------------------------

def without_torch(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    """`fer-ros ARGS` in a fresh interpreter where `import torch` fails, as after `pip install .`."""
    code = "import sys; sys.modules['torch'] = None; from fer_ros.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_help_works_without_torch():
    done = without_torch("train", "--help")
    assert done.returncode == 0, done.stderr
    assert "--set KEY=VALUE" in done.stdout and "pip install 'fer_ros[train]'" in " ".join(done.stdout.split())


@pytest.mark.parametrize("args", [
    ["train", "--epochs", "1"], ["export", PT_MODEL, "-o", "{tmp}/m.onnx"],
    ["evaluate", "--model", PT_MODEL, "--data", "{csv}"],
    ["infer", "{photo}", "--backend", "torch", "--model", PT_MODEL],
    ["bench", "classifier", "--json", "{tmp}/b.json"]])
def test_commands_that_need_torch_say_what_to_install(tmp_path, good_csv, args):
    args = [str(a).format(tmp=tmp_path, csv=good_csv, photo=PHOTO) for a in args]
    if args[0] == "infer":
        need(PHOTO)
    done = without_torch(*args)
    assert done.returncode == 2, done.stderr
    error_line(done.stderr, args[0], "needs PyTorch (torch), which is not installed; pip install 'fer_ros[train]'")


# ---- truncated videos -------------------------------------------------------------------------------------------

@pytest.fixture
def cut_videos(tmp_path) -> dict[str, Path]:
    """The real clip cut in half twice over: as a streamable MP4 (moov first) and as an MJPG AVI."""
    mp4 = tmp_path / "streamable_cut.mp4"
    mp4.write_bytes(cut(faststart(need(CLIP).read_bytes())))
    avi = tmp_path / "mjpg_cut.avi"
    avi.write_bytes(cut(mjpg_avi(tmp_path / "whole.avi").read_bytes()))
    return {"mp4": mp4, "avi": avi}


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_a_truncated_video_is_said_in_the_summary_and_the_json(capsys, cut_videos, onnx_model, kind):
    video = cut_videos[kind]
    code, out, err = cli_run(capsys, "infer", video, "--model", onnx_model)
    assert code == 1, err  # done, but not all of it
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["frames_declared"] == 72 and summary["processed"] == summary["frames_read"] < 40
    assert "ended after" in summary["truncated"] and len(lines) == summary["processed"] + 1
    assert f"fer-ros infer: warning: {video}: the video ended after {summary['frames_read']} of the 72" in err
    assert err.strip().splitlines()[-1].endswith(f"the video ended early, after {summary['frames_read']} of the 72 "
                                                 "frames it declares")


def test_a_truncated_video_into_a_bag(capsys, tmp_path, cut_videos):
    need_module("rosbags", "bags")
    code, out, err = cli_run(capsys, "bag", "from-video", cut_videos["mp4"], tmp_path / "bag", "--scale", "0.25")
    assert code == 1
    assert "the video ended early, after 33 of the 72 frames it declares" in out.splitlines()[0]
    assert "fer-ros bag from-video: warning:" in err and "wrote 33 frames; the video ended early" in err


def test_a_whole_video_is_not_called_truncated(capsys, tmp_path):
    need_module("rosbags", "bags")
    code, out, _ = cli_run(capsys, "bag", "from-video", need(VIDEOS / "pyfeat_no_face.mp4"), tmp_path / "bag",
                           "--scale", "0.25")  # declares 98 frames, gives 95: within the tolerance
    assert code == 0 and out.startswith("wrote 95 frames\n")


# ---- replay: nothing processed is a failure; warnings on stderr -----------------------------------------------

def _bag_of(tmp_path, name, datas, fmt="jpeg"):
    """A bag of CompressedImage messages with these payloads, written without the decode check."""
    from fer_ros.bags import bagio
    from fer_ros.ros import messages

    with bagio.BagWriter(tmp_path / name) as bag:
        bag.add_topic("/camera/image_raw/compressed", bagio.COMPRESSED_IMAGE)
        for i, data in enumerate(datas):
            msg = bag.store.types[bagio.COMPRESSED_IMAGE](
                header=messages.header(bag.store.types, i * 100_000_000, "cam"), format=fmt,
                data=np.frombuffer(data, np.uint8))
            bag.write("/camera/image_raw/compressed", i * 100_000_000, msg)
    return tmp_path / name


def test_a_replay_where_every_frame_failed_exits_nonzero(capsys, tmp_path, onnx_model):
    need_module("rosbags", "bags")
    jpeg = cv2.imencode(".jpg", cv2.imread(str(need(PHOTO))))[1].tobytes()
    bag = _bag_of(tmp_path, "garbage", [cut(jpeg, 0.4)] * 4)
    code, out, err = cli_run(capsys, "replay", bag, "--model", onnx_model, "--no-progress", "--report",
                             tmp_path / "report")
    assert code == 2
    error_line(err, "replay", "nothing processed: none of the 4 messages", "could not be decoded", "report.json",
               alone=False)
    assert "skipped /camera/image_raw/compressed #0" in err and "skipped /camera" not in out  # stdout: the report
    assert json.loads((tmp_path / "report" / "report.json").read_text())["frames"]["errors"] == 4
    mixed = _bag_of(tmp_path, "mixed", [jpeg, cut(jpeg, 0.4), jpeg])
    code, out, err = cli_run(capsys, "replay", mixed, "--model", onnx_model, "--no-progress", "--report",
                             tmp_path / "report2")
    assert code == 1 and "1 skipped" in out and "skipped /camera/image_raw/compressed #1" in err


# ---- unknown keys in a node/pipeline parameters file --------------------------------------------------------------

def test_unknown_parameters_are_named_with_the_nearest_known_one(capsys, tmp_path, onnx_model):
    photo = need(PHOTO)
    shipped = DEFAULTS_FILE.read_text()
    assert "detection_score: 0.6" in shipped
    cases = [  # (file text, exit status, words)
        (shipped.replace("detection_score: 0.6", "detection_scroe: 0.9"), 2,
         "/**: unknown parameter 'detection_scroe'; did you mean 'detection_score'?"),
        (with_lines(shipped.replace("/**:", "/robot/fer_node:"), "    camera_fps: 30"), 2,
         "/robot/fer_node: unknown parameter 'camera_fps'"),
        ("detection_scroe: 0.9\n", 2, "unknown parameter 'detection_scroe'; did you mean 'detection_score'?"),
    ]
    for text, status, words in cases:
        (tmp_path / "p.yaml").write_text(text)
        code, out, err = cli_run(capsys, "infer", photo, "--config", tmp_path / "p.yaml", "--model", onnx_model)
        assert code == status and out == ""
        error_line(err, "infer", str(tmp_path / "p.yaml"), words)
    # '/**' applies to every node: another node's key there is a warning that says so, the node's own keys are known
    (tmp_path / "p.yaml").write_text(with_lines(shipped, "    camera_fps: 30", "    use_sim_time: true"))
    code, out, err = cli_run(capsys, "infer", photo, "--config", tmp_path / "p.yaml", "--model", onnx_model)
    assert code == 0, err
    assert ("fer-ros infer: warning: " + str(tmp_path / "p.yaml") + ": '/**' section: ignoring camera_fps: not "
            "parameters of fer_node ('/**' applies to every node, so they may be another node's)") in err


def test_the_packaged_defaults_are_load_configs_default():
    assert DEFAULTS_FILE == ROOT / "fer_ros" / "config" / "fer.yaml" and DEFAULTS_FILE.is_file()
    assert load_config() == PipelineConfig() == load_config(DEFAULTS_FILE)
    setup = (ROOT / "setup.py").read_text()
    assert '"config/fer.yaml"' in setup  # package_data: the wheel ships it
    assert not (ROOT / "config").exists(), "one copy of the parameters, in the package"
    for launch in ("fer.launch.py", "replay.launch.py"):
        assert '"config",' in (ROOT / "launch" / launch).read_text() and '"fer.yaml"' in (ROOT / "launch" / launch
                                                                                             ).read_text()


# ---- nonsense numbers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, command, words", [
    (["evaluate", "--data", "x.csv", "--limit", "-5"], "evaluate", "argument --limit: '-5' is not a whole number >= 0"),
    (["infer", "{photo}", "--max-frames", "0"], "infer", "argument --max-frames: '0' is not a whole number >= 1"),
    (["infer", "{clip}", "--track-min-hits", "0"], "infer", "track_min_hits must be within 1..100, not 0"),
    (["infer", "{photo}", "--track-min-hits", "0"], "infer", "track_min_hits must be within 1..100, not 0"),
    (["infer", "{photo}", "--smoothing-tau-s", "nan"], "infer", "smoothing_tau_s must be within"),
    (["replay", "x", "--max-frames", "-1"], "replay", "argument --max-frames"),
    (["bag", "from-video", "{clip}", "{tmp}/b", "--step", "0"], "bag from-video", "argument --step: '0' is not a "
                                                                                  "whole number >= 1"),
    (["bag", "from-video", "{clip}", "{tmp}/b", "--scale", "nan"], "bag from-video", "'nan' is not a number > 0"),
    (["bag", "from-video", "{clip}", "{tmp}/b", "--quality", "0"], "bag from-video", "'0' is not a whole number "
                                                                                     "within 1..100"),
    (["bag", "from-images", "{tmp}", "{tmp}/b", "--fps", "-2"], "bag from-images", "argument --fps: '-2' is not a "
                                                                                   "number > 0"),
    (["bench", "--repeat", "0"], "bench", "argument --repeat"),
])
def test_nonsense_numbers_are_refused(capsys, tmp_path, onnx_model, args, command, words):
    args = [a.format(photo=PHOTO, clip=CLIP, tmp=tmp_path) for a in args]
    if args[0] == "infer":
        need(PHOTO), need(CLIP)
        args += ["--model", str(onnx_model)]
    code, out, err = cli_run(capsys, *args)
    assert code == 2 and out == ""
    error_line(err, command, words)


# ---- bag from-images decode-checks what it reads and writes ----------------------------------------------------

def test_from_images_skips_a_cut_jpeg_and_checks_what_it_writes(capsys, tmp_path, monkeypatch):
    need_module("rosbags", "bags")
    from fer_ros.bags import bagtools
    from fer_ros.bags.bagio import BagReader

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("happy_black.jpg", "sad_asian.jpg"):
        (folder / name).write_bytes(need(FACES / name).read_bytes())
    (folder / "cut.jpg").write_bytes(cut((FACES / "single_face.jpg").read_bytes(), 0.6))
    assert cv2.imread(str(folder / "cut.jpg")) is not None  # cv2.imread takes it, grey-filled: not good enough
    code, out, err = cli_run(capsys, "bag", "from-images", folder, tmp_path / "bag", "--compressed")
    assert code == 1 and "wrote 2 frames; 1 unreadable image(s) skipped" in out
    assert f"fer-ros bag from-images: warning: {folder / 'cut.jpg'}: compressed image of" in err
    with BagReader(tmp_path / "bag") as bag:
        topic = bag.image_topic()
        assert [bag.decode_image(topic.msgtype, m.data)[0].shape for m in bag.messages(topic.name)] == [
            cv2.imread(str(folder / n)).shape for n in ("happy_black.jpg", "sad_asian.jpg")]
    # a writer that produced a message its readers reject: nothing half-written is left
    real = bagtools.compressed_message
    monkeypatch.setattr(bagtools, "compressed_message", lambda *a, **k: (lambda m: dataclasses.replace(
        m, data=m.data[:len(m.data) // 3]))(real(*a, **k)))
    code, _, err = cli_run(capsys, "bag", "from-images", folder, tmp_path / "bag2", "--compressed")
    assert code == 2 and not (tmp_path / "bag2").exists()
    error_line(err, "bag from-images", "frame 0: the message written for it does not decode", alone=False)
    (folder / "happy_black.jpg").write_bytes(cut((folder / "happy_black.jpg").read_bytes()))
    (folder / "sad_asian.jpg").write_bytes(b"")
    code, _, err = cli_run(capsys, "bag", "from-images", folder, tmp_path / "bag3")
    assert code == 2
    error_line(err, "bag from-images", "no frames were read", alone=False)


# ---- a bound on image size --------------------------------------------------------------------------------------

def test_a_huge_image_is_refused_before_it_is_decoded(capsys, tmp_path, onnx_model):
    huge = png_claiming(tmp_path / "huge.png", 20000, 20000)
    assert huge.stat().st_size < 2_000_000
    code, out, err = cli_run(capsys, "infer", huge, "--model", onnx_model)
    assert code == 2 and out == ""
    error_line(err, "infer", str(huge), "20000x20000 (400 megapixels), larger than fer_ros takes", "scale it down")
    folder = tmp_path / "photos"
    folder.mkdir()
    huge.rename(folder / "huge.png")
    (folder / "ok.jpg").write_bytes(need(PHOTO).read_bytes())
    code, out, err = cli_run(capsys, "infer", folder, "--model", onnx_model)
    assert code == 1 and "huge.png" in err and len(out.splitlines()) == 2  # one frame and the summary


def test_the_size_bound_holds_for_messages_and_frames(onnx_model):
    from fer_ros.pipeline import Pipeline

    with pytest.raises(ImageError, match="bgr8 image is 20000x20000"):
        image_to_bgr(b"\0" * 12, "bgr8", 20000, 20000)  # a raw message that claims a huge size
    buf = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    buf[16:24] = (MAX_SIDE + 1).to_bytes(4, "big") + (1).to_bytes(4, "big")
    buf[29:33] = zlib.crc32(bytes(buf[12:29])).to_bytes(4, "big")
    with pytest.raises(ImageError, match="larger than fer_ros takes"):
        decode_compressed(bytes(buf))  # a CompressedImage message, as the node gets it
    pipeline = Pipeline(load_config(model=str(onnx_model)))
    with pytest.raises(ImageError, match=f"the frame is {MAX_SIDE + 1}x2"):
        pipeline.process(np.zeros((2, MAX_SIDE + 1, 3), np.uint8), 0.0)
    with pytest.raises(ImageError, match="not an image"):
        pipeline.process(np.zeros((0, 0, 3), np.uint8), 0.0)


def test_a_cut_png_fails_in_one_line(capsys, tmp_path, onnx_model):
    png = tmp_path / "cut.png"
    png.write_bytes(cut(cv2.imencode(".png", cv2.imread(str(need(PHOTO))))[1].tobytes(), 0.7))
    code, _, err = cli_run(capsys, "infer", png, "--model", onnx_model)
    assert code == 2
    error_line(err, "infer", str(png), "a truncated PNG")  # and no libpng lines besides


# ---- multi-line YAML parser errors become one line --------------------------------------------------------------

def test_a_broken_bag_metadata_file_is_one_line(capsys, tmp_path):
    need_module("rosbags", "bags")
    from fer_ros.bags.bagtools import write_image_bag

    frames = [(i / 10, cv2.resize(cv2.imread(str(need(PHOTO))), (64, 48))) for i in range(3)]
    write_image_bag(tmp_path / "bag", frames, start_time=1.0)
    meta = tmp_path / "bag" / "metadata.yaml"
    lines = meta.read_text().splitlines()
    lines[3] = "\t" + lines[3] + ": ["  # a tab and an unclosed flow sequence
    meta.write_text("\n".join(lines))
    code, _, err = cli_run(capsys, "bag", "info", tmp_path / "bag")
    assert code == 2
    line = error_line(err, "bag info", str(meta), "not valid YAML: line 4, column", "ros2 bag reindex")
    assert "\n" not in line
    meta.write_text("just a string\n")
    code, _, err = cli_run(capsys, "bag", "info", tmp_path / "bag")
    assert code == 2
    error_line(err, "bag info", "not a rosbag2 metadata file")


# ---- bench frame installed from a wheel, and evaluate's progress while loading ----------------------------------

def test_bench_frame_says_why_yunet_is_skipped_and_how_to_give_it(capsys, tmp_path, monkeypatch, onnx_model):
    from fer_ros.bench import frame

    monkeypatch.setattr(frame, "YUNET", tmp_path / "site-packages" / "shared" / "face_detection_yunet_2023mar.onnx")
    monkeypatch.setattr(frame, "PHOTOS", {n: tmp_path / f"absent_{n}.jpg" for n in frame.PHOTOS})
    notes = [r["note"] for r in frame._frame_rows(onnx_model, 1)]
    assert any("no YuNet model was given" in n and "--detector-model face_detection_yunet_2023mar.onnx" in n
               for n in notes), notes
    code, _, err = cli_run(capsys, "bench", "frame", "--detector-model", tmp_path / "absent.onnx", "--json",
                           tmp_path / "b.json")
    assert code == 2
    error_line(err, "bench", "--detector-model", "absent.onnx: no such file")


def test_loading_a_csv_shows_progress_on_a_terminal(monkeypatch, good_csv):
    from fer_ros.learning import data

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    data._fer2013_table.__wrapped__(good_csv, 0.0)
    assert f"reading {good_csv.name}" in screen.getvalue() and f"parsing {good_csv.name}" in screen.getvalue()


def test_binary_labels_and_a_cut_checkpoint_are_one_line(tmp_path):
    from fer_ros.bags.labels import read_labels
    from fer_ros.errors import ModelFileError

    binary = tmp_path / "labels.csv"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(DataError, match=f"{binary}: not a text file of labels") as err:
        read_labels(binary)
    assert "\n" not in str(err.value)
    need_module("torch", "checkpoints are read with torch")
    from fer_ros.inference import DEFAULT_MODEL
    from fer_ros.learning import checkpoint

    cut = tmp_path / "cut.pt"
    cut.write_bytes(DEFAULT_MODEL.with_suffix(".pt").read_bytes()[:20000])
    with pytest.raises(ModelFileError, match=f"{cut}: not a readable PyTorch checkpoint") as err:
        checkpoint.load(cut)
    assert "\n" not in str(err.value)


# ---- time: any stamp, any frame, never an exception or a NaN -------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # a ROS 2 workspace without python3-hypothesis
    given = None

BAD_STAMPS = [float("nan"), float("inf"), -float("inf"), -1e308, 1e308, -3.0, 0.0]


def _frame(face: np.ndarray | None, width: int, height: int, channels: int, noise: int) -> np.ndarray:
    """A small frame: the real face photo (else noise) at width x height, grey (channels 0), 1, 3 or 4 channels."""
    base = cv2.resize(face, (width, height)) if face is not None else \
        np.random.default_rng(noise).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if channels == 0:
        return cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)
    if channels == 1:
        return cv2.cvtColor(base, cv2.COLOR_BGR2GRAY)[:, :, None]
    return base if channels == 3 else cv2.cvtColor(base, cv2.COLOR_BGR2BGRA)


def _all_finite(result) -> bool:
    numbers = [result.stamp, *(v for f in result.faces for v in (f.score, f.confidence, *f.box, *f.probs,
                                                                  *f.raw_probs))]
    return bool(np.isfinite(np.asarray(numbers, np.float64)).all())


if given is not None:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(24, 160), st.integers(24, 160), st.sampled_from([0, 1, 3, 4]),
                              st.booleans(), st.one_of(st.sampled_from(BAD_STAMPS),
                                                       st.floats(-10, 10), st.floats(allow_nan=True))),
                    min_size=1, max_size=8))
    def test_the_pipeline_takes_any_stamp_and_frame(onnx_model, frames):
        photo = cv2.imread(str(PHOTO)) if PHOTO.is_file() else None
        pipeline = Pipeline(load_config(model=str(onnx_model), detector="haar", track_min_hits=1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FerRosWarning)
            for i, (width, height, channels, with_face, stamp) in enumerate(frames):
                for t in (stamp, 0.1 * i):  # the odd stamp, then a good one: the track must recover
                    result = pipeline.process(_frame(photo if with_face else None, width, height, channels, i), t)
                    assert _all_finite(result), result
                    json.dumps(result.to_dict(), allow_nan=False)
else:
    def test_the_pipeline_takes_any_stamp_and_frame():
        pytest.skip("hypothesis is not installed")


def test_a_nan_stamp_does_not_poison_a_track(onnx_model):
    photo = cv2.resize(cv2.imread(str(need(PHOTO))), (320, 312))
    pipeline = Pipeline(load_config(model=str(onnx_model), detector="haar"))
    with pytest.warns(FerRosWarning, match="stamp nan is not a finite time"):
        results = [pipeline.process(photo, t) for t in (0.0, 0.1, float("nan"), 0.2, float("inf"), 0.3)]
    assert all(r.faces and r.faces[0].label == "happy" and r.faces[0].track_id == 1 for r in results[1:])
    assert [r.stamp for r in results] == [0.0, 0.1, 0.1, 0.2, 0.2, 0.3]
    with pytest.warns(FerRosWarning, match="before the previous one .* starting over"):
        back = pipeline.process(photo, -5.0)
    assert back.stamp == -5.0 and pipeline.process(photo, -4.9).faces[0].track_id == 1  # tracks started over


def test_the_recognizer_survives_any_stamp(onnx_model):
    from fer_ros.inference import load_backend
    from fer_ros.ros.node_logic import FaceRecognizer

    face = cv2.resize(cv2.imread(str(need(PHOTO))), (128, 128))
    recognizer = FaceRecognizer(load_backend(onnx_model), PipelineConfig())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FerRosWarning)
        for stamp in (1.0, float("nan"), 1.1, float("inf"), -float("inf"), 0.5, 1e308, "x", None, 2.0):
            out, = recognizer.classify({"f1": (face, stamp)})
            assert np.isfinite(out.probs).all() and np.isfinite(out.stamp) and out.confidence == out.confidence
    assert np.allclose(out.probs, out.raw_probs)  # 2.0 after 1e308: went back, the average started over


# ---- the YuNet model file: one check for `models where`, `fetch` and the detector ----------------------------------

def fer_ros(*args, env: dict | None = None, umask: int | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    """`python -m fer_ros ARGS` in a fresh process, with `env` added to (None values removed from) the environment."""
    import os

    full = {**os.environ, **{k: v for k, v in (env or {}).items() if v is not None}}
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
    return subprocess.run([sys.executable, "-m", "fer_ros", *map(str, args)], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=120, preexec_fn=None if umask is None else lambda: os.umask(umask))


@pytest.fixture
def yunet_places(tmp_path):
    """(environment of a user with an empty cache, the cached model's path, a zero-byte file, the classifier ONNX)."""
    from fer_ros.vision.yunet import MODEL_NAME

    cache = tmp_path / "cache"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    env = {"XDG_CACHE_HOME": str(cache), "FER_ROS_YUNET_MODEL": None, "PYTHONPATH": str(ROOT)}
    return env, cache / "fer_ros" / MODEL_NAME, empty, ROOT / "fer_ros" / "weights" / "fer2013_arch1.onnx"


def test_models_where_checks_the_file_it_names(yunet_places):
    env, cached, empty, classifier = yunet_places
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # a zero-byte file in the cache
    done = fer_ros("models", "where", env=env)
    assert done.returncode == 0 and done.stdout.startswith("haar: the cached ") and "0 bytes" in done.stdout
    assert "fer-ros models fetch" in done.stdout
    done = fer_ros("models", "where", env={**env, "FER_ROS_YUNET_MODEL": str(classifier)})  # a foreign ONNX
    assert done.stdout.startswith("haar: $FER_ROS_YUNET_MODEL = ") and "not YuNet" in done.stdout
    assert "fix or unset the variable" in done.stdout
    cached.write_bytes(need(YUNET).read_bytes())  # a good cached file beats a stale variable, and says why
    done = fer_ros("models", "where", env={**env, "FER_ROS_YUNET_MODEL": str(empty)})
    assert done.stdout.startswith(f"yunet: {cached} ($FER_ROS_YUNET_MODEL = {empty} is not used: 0 bytes")


@pytest.mark.parametrize("place", ["cache", "env"])
def test_detector_yunet_finds_the_model_where_the_docs_say(yunet_places, onnx_model, place):
    env, cached, empty, classifier = yunet_places
    if place == "cache":
        cached.parent.mkdir(parents=True)
        cached.write_bytes(need(YUNET).read_bytes())
    else:
        env = {**env, "FER_ROS_YUNET_MODEL": str(need(YUNET))}
    done = fer_ros("infer", need(PHOTO), "--detector", "yunet", "--model", onnx_model, env=env)
    assert done.returncode == 0, done.stderr
    assert "face detector yunet: " in done.stderr and json.loads(done.stdout.splitlines()[0])["faces"]


def test_detector_yunet_without_a_usable_model_is_one_line(yunet_places, onnx_model):
    env, cached, empty, classifier = yunet_places
    done = fer_ros("infer", need(PHOTO), "--detector", "yunet", "--model", onnx_model,
                   env={**env, "FER_ROS_YUNET_MODEL": str(classifier)})
    assert done.returncode == 2 and done.stdout == ""
    error_line(done.stderr, "infer", "the yunet detector has no usable model file", "not YuNet",
               "fix or unset the variable")
    done = fer_ros("infer", need(PHOTO), "--detector", "yunet", "--detector-model", empty, "--model", onnx_model,
                   env=env)
    assert done.returncode == 2
    error_line(done.stderr, "infer", f"detector_model {empty}: 0 bytes")


# ---- downloads on a bad network: real servers on 127.0.0.1 ---------------------------------------------------------

@pytest.fixture
def bad_servers():
    """Raw TCP servers on 127.0.0.1: {"cut": one that sends half the body it announces, "garbage": one that answers
    something that is not HTTP}; yields their base URLs."""
    import socket
    import threading

    replies = {"cut": b"HTTP/1.1 200 OK\r\nContent-Length: 232589\r\nContent-Type: application/octet-stream\r\n\r\n"
                      + b"\x08" * 100_000,
               "garbage": b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n"}
    servers, urls = [], {}
    for name, reply in replies.items():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()

        def serve(sock=sock, reply=reply):
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    conn.sendall(reply)

        threading.Thread(target=serve, daemon=True).start()
        servers.append(sock)
        urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}/face_detection_yunet_2023mar.onnx"
    yield urls
    for sock in servers:
        sock.close()


def test_fetch_on_a_bad_network_is_one_line(yunet_places, bad_servers):
    env, cached, empty, classifier = yunet_places
    closed = "http://127.0.0.1:9/face_detection_yunet_2023mar.onnx"  # the discard port: nothing listens
    for url, words in [(bad_servers["cut"], "the transfer was cut after"),
                       (bad_servers["garbage"], "the server's reply is not HTTP"),
                       (closed, "cannot connect"),
                       ("htp:/nowhere", "not a URL to download from"),
                       ("face_detection_yunet_2023mar.onnx", "not a URL to download from")]:
        done = fer_ros("models", "fetch", "--url", url, env=env)
        assert done.returncode == 2, (url, done.stderr)
        line = error_line(done.stderr, "models", words)
        assert "bug" not in line and "unexpected" not in line
        if "download failed" in line:
            assert "models fetch --url file:///path/to/face_detection_yunet_2023mar.onnx" in line
        assert not cached.parent.exists() or not any(cached.parent.iterdir()), "nothing half-written is kept"


def test_offline_names_what_to_do():
    import socket
    import urllib.error

    from fer_ros.vision.detector_model import download_error

    err = download_error("https://github.com/x.onnx", urllib.error.URLError(socket.gaierror(-3, "Temporary failure "
                                                                                               "in name resolution")))
    assert "no network or unknown host (Temporary failure in name resolution)" in str(err)
    assert "--url file:///path/to/" in str(err) and "$FER_ROS_YUNET_MODEL" in str(err)


def test_fetch_from_a_file_url_keeps_a_readable_checked_file(yunet_places, tmp_path):
    env, cached, empty, classifier = yunet_places
    done = fer_ros("models", "fetch", "--url", need(YUNET).resolve().as_uri(), env=env, umask=0o022)
    assert done.returncode == 0, done.stderr
    assert cached.read_bytes() == YUNET.read_bytes() and cached.stat().st_mode & 0o777 == 0o644
    assert "--url file://" in (ROOT / "README.md").read_text()
    other = tmp_path / "other.onnx"
    done = fer_ros("models", "fetch", "--url", classifier.resolve().as_uri(), "--dest", other, env=env, umask=0o077)
    assert done.returncode == 2 and not other.exists()
    error_line(done.stderr, "models", "SHA-256", "not kept")


def test_the_readme_python_example_prints_plain_numbers():
    text = (ROOT / "README.md").read_text()
    code = text.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"photo.jpg"', repr(str(need(PHOTO))))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    faces = done.stdout.splitlines()[1:]
    assert faces and "np.float" not in done.stdout and "{'angry': 0." in faces[0]


# ---- replay labels: rows outside the bag, a file that covers nothing, a frame labelled twice -----------------------

@pytest.fixture
def clip_bag(tmp_path) -> Path:
    """The real clip, every 8th frame at a quarter size, as a bag: 9 frames 0.267 s apart, stamps from 1.7e9 s."""
    need_module("rosbags", "bags")
    from fer_ros.bags.bagtools import write_image_bag
    from fer_ros.vision.video import Video

    write_image_bag(tmp_path / "clip", Video(need(CLIP)).frames(step=8, scale=0.25), start_time=1_700_000_000.0,
                    storage="mcap")
    return tmp_path / "clip"


def test_replay_labels_outside_the_bag(capsys, tmp_path, clip_bag, onnx_model):
    labels = tmp_path / "labels.csv"
    replay = ["replay", clip_bag, "--model", onnx_model, "--no-progress", "--labels", labels]
    labels.write_text("start,end,label\n1700000000.0,1700000003.0,happy\n")  # bag time instead of seconds from start
    code, out, err = cli_run(capsys, *replay, "--report", tmp_path / "r1")
    assert code == 2
    error_line(err, "replay", "none of its 1 rows covers a replayed frame", "0.000..2.133 s from the bag start",
               alone=False)
    assert (tmp_path / "r1" / "report.json").is_file()  # what was computed is kept
    labels.write_text("frame,label\n0,happy\n3,happy\n9,happy\n40,none\n")  # frames 9 and 40 are not in the bag
    code, out, err = cli_run(capsys, *replay, "--report", tmp_path / "r2")
    assert code == 1, err
    assert "fer-ros replay: warning: " in err and "2 of 4 rows cover no replayed frame (lines 4, 5)" in err
    assert "frames 0..8" in err
    labels.write_text("stamp,label\n1699999990.0,happy\n")
    code, out, err = cli_run(capsys, *replay, "--report", tmp_path / "r3")
    assert code == 2
    error_line(err, "replay", "header stamps 1700000000.000..1700000002.133 s", alone=False)


@pytest.mark.parametrize("text, words", [
    ("frame,label\n0,happy\n1,sad\n0,angry\n", "l.csv:4: frame 0 is labelled 'angry' here but 'happy' on line 2"),
    ("stamp,label\n10.0,happy\n10.0005,sad\n", "l.csv:3: stamp 10.0005 (within 2 ms of line 2's"),
    ("start,end,label\n0,2,happy\n5,6,none\n1.5,3,sad\n", "l.csv:4: the interval 1.5,3.0 (it overlaps line 2's)"),
])
def test_a_frame_labelled_twice_differently_is_refused(capsys, tmp_path, clip_bag, onnx_model, text, words):
    (tmp_path / "l.csv").write_text(text)
    code, out, err = cli_run(capsys, "replay", clip_bag, "--model", onnx_model, "--no-progress", "--labels",
                             tmp_path / "l.csv", "--report", tmp_path / "r")
    assert code == 2 and out == ""
    error_line(err, "replay", words, "keep one label per frame")


def test_the_same_label_twice_is_fine(tmp_path):
    from fer_ros.bags.labels import read_labels

    (tmp_path / "l.csv").write_text("start,end,label\n0,2,happy\n1,3,happy\n")
    assert read_labels(tmp_path / "l.csv").match(0, 0.0, 1.5) == "happy"


# ---- names and modes ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("namespace", ["bad ns", "/robot/", "//robot", "/1robot", "/robot-2", "~/x"])
def test_an_invalid_namespace_is_refused(capsys, tmp_path, onnx_model, namespace):
    code, out, err = cli_run(capsys, "replay", tmp_path / "bag", "--namespace", namespace, "--model", onnx_model)
    assert code == 2 and out == ""
    error_line(err, "replay", f"argument --namespace: {namespace!r} is not a ROS 2 namespace")


def test_a_valid_namespace_is_used(capsys, tmp_path, clip_bag, onnx_model):
    code, out, err = cli_run(capsys, "replay", clip_bag, "--model", onnx_model, "--no-progress", "--namespace",
                             "robot_1/head", "--out", tmp_path / "out", "--report", tmp_path / "r")
    assert code == 0, err
    assert "/robot_1/head/faces" in json.loads((tmp_path / "r" / "report.json").read_text())["outputs"]["bag"][
        "topics"]


def test_a_recognizer_parameters_file_is_refused_by_replay(capsys, tmp_path, clip_bag, onnx_model):
    params = tmp_path / "recognizer.yaml"
    assert "    mode: \"detector\"\n" in DEFAULTS_FILE.read_text()
    params.write_text(DEFAULTS_FILE.read_text().replace("    mode: \"detector\"\n", "    mode: \"recognizer\"\n"))
    code, out, err = cli_run(capsys, "replay", clip_bag, "--config", params, "--model", onnx_model, "--report",
                             tmp_path / "r")
    assert code == 2 and out == "" and not (tmp_path / "r").exists()
    error_line(err, "replay", f"{params}: mode: recognizer", "detector-mode parameters file")


@pytest.mark.parametrize("args", [["--crops", "faces"], ["--crops", "crops"], ["--detector", "yunet"],
                                  ["--detection-size", "640"], ["--config", DEFAULTS_FILE]])
def test_framing_options_on_a_csv_are_refused(capsys, good_csv, onnx_model, args):
    code, out, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", good_csv, *args)
    assert code == 2 and out == ""
    error_line(err, "evaluate", args[0], "is a CSV of 48x48 face crops", "drop them")


def test_crops_mode_on_full_photos_warns(capsys, tmp_path, onnx_model):
    for name, label in (("happy_black.jpg", "happy"), ("sad_asian.jpg", "sad")):
        (tmp_path / label).mkdir()
        (tmp_path / label / name).write_bytes(need(FACES / name).read_bytes())
    shapes = {n: cv2.imread(str(FACES / n)).shape[:2] for n in ("happy_black.jpg", "sad_asian.jpg")}
    code, out, err = cli_run(capsys, "evaluate", "--model", onnx_model, "--data", tmp_path, "--crops", "crops")
    assert code == 0, err
    if any(max(s) > 1.25 * min(s) for s in shapes.values()):
        assert "fer-ros evaluate: warning: " in err and "not square" in err and "--crops faces" in err


# ---- export: options checked before any file is written, and all or nothing ------------------------------------

@pytest.fixture
def model_copy(tmp_path, onnx_model) -> Path:
    """A copy of the real ONNX model in its own folder (the tests look at what else appears there)."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "m.onnx").write_bytes(onnx_model.read_bytes())
    return folder / "m.onnx"


def _split(csv: Path) -> str:
    return csv.read_text().splitlines()[1].rsplit(",", 1)[1]


def test_int8_with_fewer_crops_than_asked_writes_nothing(capsys, model_copy, good_csv):
    need_module("onnx", "int8 export")
    code, out, err = cli_run(capsys, "export", model_copy, "--format", "onnx-int8", "--calib-data", good_csv,
                             "--calib-split", _split(good_csv), "--calib-size", "100")
    assert code == 2 and out == ""
    error_line(err, "export", "--calib-size 100", "has only 60 crops", "--calib-size 60 or less", "nothing was written")
    assert sorted(p.name for p in model_copy.parent.iterdir()) == ["m.onnx"]
    # none left to measure the accuracy on: said, and the export is done
    code, out, err = cli_run(capsys, "export", model_copy, "--format", "onnx-int8", "--calib-data", good_csv,
                             "--calib-split", _split(good_csv), "--calib-size", "60")
    assert code == 0, err
    assert "fer-ros export: warning: no crops are left after calibration" in err and "RuntimeWarning" not in err
    assert (model_copy.parent / "m.int8.onnx").is_file()


def test_int8_from_a_checkpoint_with_too_few_crops_writes_nothing(capsys, tmp_path, good_csv):
    need_module("torch", "a .pt checkpoint")
    pt = tmp_path / "m.pt"
    pt.write_bytes(PT_MODEL.read_bytes())
    code, _, err = cli_run(capsys, "export", pt, "--format", "tensorrt", "--int8", "--trtexec", "--calib-data",
                           good_csv, "--calib-split", _split(good_csv), "--calib-size", "500")
    assert code == 2
    error_line(err, "export", "has only 60 crops")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.csv", "m.pt"]  # no float ONNX beside it either


@pytest.mark.parametrize("args, words", [
    (["--format", "onnx-int8", "-o", "{model}", "--calib-data", "{csv}"], "-o {model}: that is an input of this "
                                                                          "command"),
    (["--format", "tensorrt", "-o", "{dir}/m.fp16.engine", "--trtexec", "--calib-data", "{csv}"],
     "--calib-data: only for int8"),
    (["--format", "onnx-int8", "--calib-data", "{csv}", "--calib-size", "-5"],
     "argument --calib-size: '-5' is not a whole number >= 1"),
    (["--format", "tensorrt", "--workspace", "-1"], "argument --workspace: '-1' is not a whole number >= 1"),
    (["--format", "tensorrt", "--batch", "1", "-8", "32"], "argument --batch: '-8' is not a whole number >= 1"),
    (["--format", "onnx", "--int8"], "--int8: only with --format tensorrt; for an int8 ONNX use --format onnx-int8"),
    (["--format", "tensorrt", "--from-engine", "{model}"], "--from-engine {model}: give the engine trtexec built"),
    (["--format", "onnx-int8", "--from-engine", "{dir}/m.engine"], "--from-engine: only with --format tensorrt"),
])
def test_export_options_that_would_be_ignored_or_overwrite_the_input(capsys, model_copy, good_csv, args, words):
    before = model_copy.read_bytes()
    args = [a.format(model=model_copy, dir=model_copy.parent, csv=good_csv) for a in args]
    code, out, err = cli_run(capsys, "export", model_copy, *args)
    assert code == 2 and out == ""
    error_line(err, "export", words.format(model=model_copy))
    assert model_copy.read_bytes() == before and sorted(p.name for p in model_copy.parent.iterdir()) == ["m.onnx"]


def test_tensorrt_without_tensorrt_writes_nothing(capsys, tmp_path):
    need_module("torch", "a .pt checkpoint")
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    pt = tmp_path / "m.pt"
    pt.write_bytes(PT_MODEL.read_bytes())
    code, out, err = cli_run(capsys, "export", pt, "--format", "tensorrt")
    assert code == 2 and out == ""
    error_line(err, "export", "TensorRT's Python module is not installed", "nothing was written", "--trtexec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


# ---- file names OpenCV cannot take, symbolic link loops, a truncated MCAP bag -------------------------------------

def fer_ros_bytes(*args, cwd) -> subprocess.CompletedProcess:
    """`python -m fer_ros ARGS` with ARGS as bytes (file names that are not UTF-8), this checkout first."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable.encode(), b"-m", b"fer_ros", *(a if isinstance(a, bytes) else
                          str(a).encode() for a in args)], capture_output=True, env=env, cwd=cwd, timeout=180)


def test_a_file_name_that_is_not_utf8_does_not_crash(tmp_path, onnx_model):
    import os

    photo, clip = need(PHOTO), need(CLIP)
    done = fer_ros_bytes("infer", photo, "--model", onnx_model, "--save", b"caf\xe9.jpg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # was SIGSEGV in cv2.imwrite
    assert cv2.imdecode(np.fromfile(os.path.join(bytes(tmp_path), b"caf\xe9.jpg"), np.uint8), 1).shape == \
        cv2.imread(str(photo)).shape
    done = fer_ros_bytes("infer", clip, "--model", onnx_model, "--max-frames", "3", "--save", b"clip\xff.mp4",
                         cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert os.path.getsize(os.path.join(bytes(tmp_path), b"clip\xff.mp4")) > 1000
    os.symlink(clip, os.path.join(bytes(tmp_path), b"in\xff.mp4"))  # OpenCV cannot open it: one line, no crash
    done = fer_ros_bytes("infer", b"in\xff.mp4", "--model", onnx_model, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error_line(done.stderr.decode(), "infer", "the name is not UTF-8, which OpenCV cannot open; rename the file")
    assert sorted(os.listdir(bytes(tmp_path))) == sorted([b"caf\xe9.jpg", b"clip\xff.mp4", b"in\xff.mp4"])


def test_a_symlink_loop_is_one_line(capsys, tmp_path, onnx_model):
    import os

    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    for args, words in [(["infer", need(PHOTO), "--save", tmp_path / "loop.jpg", "--model", onnx_model],
                         "a symbolic link to nowhere (or a loop of links)"),
                        (["replay", tmp_path / "a", "--model", onnx_model], "no such bag"),
                        (["bag", "from-video", tmp_path / "a", tmp_path / "out"], "cannot open the video"),
                        (["infer", tmp_path / "a", "--model", onnx_model], "no such file, folder or camera")]:
        code, out, err = cli_run(capsys, *args)
        assert code == 2 and out == "", args
        line = error_line(err, args[0] if args[0] != "bag" else "bag from-video", words)
        assert "unexpected" not in line
    line, code = cli.error_line("replay", RuntimeError(f"Symlink loop from '{tmp_path / 'a'}'"))
    assert code == 2 and line.endswith(f"{tmp_path / 'a'}: a loop of symbolic links (links that point at each "
                                       "other); fix or remove the link")


def test_a_truncated_mcap_bag_exits_1_with_a_warning(capsys, tmp_path, onnx_model):
    need_module("rosbags", "bags")
    from fer_ros.bags.bagtools import write_image_bag
    from fer_ros.vision.video import Video

    # raw frames: MCAP closes a chunk every MiB, so a cut leaves complete chunks before it
    write_image_bag(tmp_path / "bag", Video(need(CLIP)).frames(step=2), storage="mcap", start_time=1.0)
    data = tmp_path / "bag" / "bag.mcap"
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    code, out, err = cli_run(capsys, "replay", tmp_path / "bag", "--model", onnx_model, "--no-progress", "--report",
                             tmp_path / "r")
    assert code == 1, err
    assert "fer-ros replay: warning: " in err and "bag.mcap is truncated or corrupt" in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert 0 < report["frames"]["processed"] < 36 and "before the damage" in report["stopped"]


# ---- outputs are written whole or not at all -----------------------------------------------------------------

def test_atomic_output_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(ValueError), cli.atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("the writer failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), cli.atomic_output(target, keep_on_interrupt=True) as tmp:
        tmp.write_bytes(b"frames so far")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"frames so far" and list(tmp_path.iterdir()) == [target]
    with cli.atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


# ---- small ones -------------------------------------------------------------------------------------------------

def test_a_pt_model_needs_no_backend_option(capsys):
    need_module("torch", "a .pt model")
    code, out, err = cli_run(capsys, "infer", need(PHOTO), "--model", PT_MODEL)
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["faces"]


def test_videos_in_a_folder_are_said_and_skipped_images_use_the_warning_form(capsys, tmp_path, onnx_model):
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(need(PHOTO).read_bytes())
    (folder / "b.jpg").write_bytes(cut(PHOTO.read_bytes(), 0.3))
    (folder / "clip.mp4").write_bytes(need(CLIP).read_bytes())
    code, out, err = cli_run(capsys, "infer", folder, "--model", onnx_model)
    assert code == 1
    assert f"fer-ros infer: warning: {folder}: reading the 2 image(s) only; it has 1 video(s) (clip.mp4)" in err
    assert f"fer-ros infer: warning: skipped {folder / 'b.jpg'}: " in err
    assert json.loads(out.splitlines()[-1])["summary"]["videos_skipped"] == 1
    (folder / "a.jpg").unlink()
    (folder / "b.jpg").unlink()
    code, out, err = cli_run(capsys, "infer", folder, "--model", onnx_model)
    assert code == 2
    error_line(err, "infer", "no images", "it has 1 video(s) (clip.mp4)", "give each video as SOURCE")


def test_train_without_config_works_from_any_folder(tmp_path):
    need_module("torch", "fer-ros train")
    done = fer_ros("train", "--epochs", "1", "--max-rows", "10", "--out", tmp_path / "run",
                   env={"PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    # the default config is found from the package; its relative data path is the working directory's
    assert done.returncode == 2 and "training/configs" not in done.stderr.split("error:")[1][:40]
    error_line(done.stderr, "train", "../shared/data/fer2013/fer2013.csv.gz",
               f"relative paths are taken from the working directory, {tmp_path}")


def test_bag_from_video_without_rosbags_fails_before_any_progress_bar(tmp_path):
    code = ("import sys; sys.modules['rosbags'] = None; from fer_ros.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "bag", "from-video", str(need(CLIP)), str(tmp_path / "b")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    error_line(done.stderr, "bag from-video", "needs rosbags", "pip install 'fer_ros[bag]'")  # alone: no bar
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2])
def test_fer_node_stopped_while_it_loads_exits_cleanly(delay_s):
    """Ctrl-C while the node's modules load: exit 0, no traceback. Without ROS 2 the node cannot start at all
    (no rclpy): then the only traceback is that ImportError, and never a KeyboardInterrupt."""
    import os
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    node = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "fer_node")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    # the interpreter's own start-up is before the script's first line: wait for the script's handlers (Python
    # itself catches SIGINT but not SIGTERM, so SIGTERM in the caught mask means the script has run its first lines)
    status = Path(f"/proc/{node.pid}/status")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and node.poll() is None:
        try:
            caught = next(int(line.split()[1], 16) for line in status.read_text().splitlines()
                          if line.startswith("SigCgt:"))
        except (OSError, StopIteration):  # not started yet, or already gone
            caught = 0
        if caught & 1 << (signal.SIGTERM - 1):
            break
        time.sleep(0.002)
    time.sleep(delay_s)  # then while the script imports the node's modules
    node.send_signal(signal.SIGINT)
    out, err = node.communicate(timeout=120)
    assert "KeyboardInterrupt" not in err and "multiarray failed to import" not in err, err
    if importlib.util.find_spec("rclpy") is not None:
        assert node.returncode == 0 and "Traceback" not in err, (node.returncode, err)
    else:
        assert node.returncode == 0 or "No module named 'rclpy'" in err, (node.returncode, err)


def test_a_replay_that_fails_leaves_no_output_bag_or_video(capsys, tmp_path, clip_bag, onnx_model, monkeypatch):
    from fer_ros.ros import messages

    real, calls = messages.detections, []

    def fails_on_the_fifth(*args, **kwargs):  # the output writer breaks mid-run
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(messages, "detections", fails_on_the_fifth)
    code, out, err = cli_run(capsys, "replay", clip_bag, "--model", onnx_model, "--no-progress", "--out",
                             tmp_path / "out", "--video", tmp_path / "annotated.mp4", "--report", tmp_path / "r")
    assert code == 2 and len(calls) == 5
    error_line(err, "replay", "disk went away", alone=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no bag, no video, no temporary file


def test_outputs_get_the_usual_file_mode(capsys, tmp_path, onnx_model):
    import os

    old = os.umask(0o022)
    try:
        code, _, err = cli_run(capsys, "infer", need(PHOTO), "--model", onnx_model, "--save", tmp_path / "a.jpg")
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "a.jpg").stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600
