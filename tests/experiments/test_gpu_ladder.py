"""The one-call GPU ladder driver, run on CPU at tiny size (issue 13): trains the pair, continues
the smallest base on traces and on the base mixture, evaluates knowledge and packs $OUT."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile

import pytest

from experiments.gpu_ladder import main
from sinkmech.data.ladder import build_ladder_corpus
from tests.data.test_ladder import recipe, tiny_world


@pytest.mark.slow
def test_tiny_ladder_packs_every_result(tmp_path):
    import pydoc_data.topics

    source = tmp_path / "src.txt"
    source.write_text(
        "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60_000]
    )
    build_ladder_corpus(recipe(source), tmp_path / "corpus", tmp_path / "cache", world=tiny_world())
    out = tmp_path / "out"
    main(
        [
            "--out",
            str(out),
            "--corpus",
            str(tmp_path / "corpus"),
            "--work",
            str(tmp_path / "work"),
            "--sizes",
            "tiny",
            "--reason-lm",
            "tiny",
            "--reason-seeds",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "results.tar.gz",
        "summary.json",
        "tiny_noqknorm.tar.gz",
        "tiny_noqknorm_continued_s1.tar.gz",
        "tiny_qknorm.tar.gz",
    ]
    runs = json.loads((out / "summary.json").read_text())["runs"]
    assert {r["state"] for r in runs.values()} == {"done"} and len(runs) == 4
    with tarfile.open(out / "results.tar.gz") as tar:
        table = tar.extractfile("tables/knowledge.csv").read().decode()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert {r["run"] for r in rows} == set(runs)
    with tarfile.open(out / "tiny_qknorm.tar.gz") as tar:
        names = tar.getnames()
    assert "tiny_qknorm_s0/model.safetensors" in names and "tiny_qknorm_s0/tokenizer.json" in names
    assert not any(n.endswith("train_state.pt") for n in names)


@pytest.mark.integration  # trains four tiny models (make test-integration)
def test_attention_form_pair_trains_every_variant_and_seed(tmp_path):
    """Issue 27's matched pair as the GPU call will run it: learned-sink beside its softmax
    partner, two seeds each, every model packed whole, no continuation."""
    import pydoc_data.topics

    source = tmp_path / "src.txt"
    source.write_text(
        "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60_000]
    )
    build_ladder_corpus(recipe(source), tmp_path / "corpus", tmp_path / "cache", world=tiny_world())
    out = tmp_path / "out"
    argv = ["--out", str(out), "--corpus", str(tmp_path / "corpus"), "--work", str(tmp_path / "w")]
    argv += ["--sizes", "tiny", "--variants", "learned_sink,noqknorm", "--seeds", "0,1"]
    main([*argv, "--reason-variants", "none", "--device", "cpu"])
    runs = json.loads((out / "summary.json").read_text())["runs"]
    names = {f"tiny_{v}_s{s}" for v in ("learned_sink", "noqknorm") for s in (0, 1)}
    assert set(runs) == names and {r["state"] for r in runs.values()} == {"done"}
    assert {p.name for p in out.glob("tiny_*.tar.gz")} == {
        "tiny_learned_sink.tar.gz",
        "tiny_noqknorm.tar.gz",
    }
    with tarfile.open(out / "tiny_learned_sink.tar.gz") as tar:
        packed = {name.split("/")[0] for name in tar.getnames()}
    assert packed == {"tiny_learned_sink_s0", "tiny_learned_sink_s1"}
    with pytest.raises(SystemExit, match="--variants \\['softpick'\\]"):
        main([*argv, "--variants", "softpick"])
    too_many = ["--variants", "noqknorm,qknorm", "--reason-variants", "noqknorm"]
    with pytest.raises(SystemExit, match="9 files for \\$OUT"):
        main([*argv, *too_many, "--reason-seeds", "1,2,3,4,5"])


@pytest.mark.integration  # trains four tiny models and ranks their knowledge
def test_knowledge_ladder_script_trains_ranks_and_packs(tmp_path):
    """``experiments/gpu_knowledge_ladder.sh`` as the GPU call runs it (issue 29), at tiny size on
    the CPU: a transport corpus with ``facts.json.xz`` is unpacked, every model is trained and
    ranked on the version-2 template families, and $OUT stays within what a call returns."""
    import lzma
    import os
    import pydoc_data.topics
    import subprocess
    import sys
    from pathlib import Path

    source = tmp_path / "src.txt"
    source.write_text(
        "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60_000]
    )
    corpus = tmp_path / "corpus"
    build_ladder_corpus(recipe(source), corpus, tmp_path / "cache", world=tiny_world())
    facts = corpus / "facts.json"
    (corpus / "facts.json.xz").write_bytes(lzma.compress(facts.read_bytes()))
    facts.unlink()
    out = tmp_path / "out"
    env = dict(
        os.environ,
        OUT=str(out),
        CORPUS=str(corpus),
        WORK=str(tmp_path / "work"),
        SIZES="tiny",
        REASON_LM="tiny",
        CITIES="4",
        ANALYSE="tiny_noqknorm_s0",
        DEVICE="cpu",
        JOBS="2",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    script = Path(__file__).resolve().parents[2] / "experiments" / "gpu_knowledge_ladder.sh"
    subprocess.run(["bash", str(script)], env=env, check=True, cwd=script.parents[1])
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 8 and "families.tar.gz" in names and "summary.json" in names
    with tarfile.open(out / "families.tar.gz") as tar:
        names = tar.getnames()
        ranked = {
            n.split("/")[1]
            for n in names
            if n.startswith("families/") and n.endswith("/summary.csv")
        }
        table = tar.extractfile("families/tiny_noqknorm_s0/families.csv").read().decode()
    assert ranked == {
        "tiny_noqknorm_s0",
        "tiny_qknorm_s0",
        *(f"tiny_noqknorm_{arm}_s{seed}" for arm in ("reasoning", "control") for seed in (1, 2)),
    }
    sets = {row["set"] for row in csv.DictReader(io.StringIO(table))}
    assert sets == {"v2 train", "v2 held-out"}
    # the tiny world is too small for balanced truth statements: the probes fail, are logged and
    # leave no completion marker, and everything else is still packed
    assert "analysis/tiny_noqknorm_s0/truth_probes.log" in names
    assert "analysis/tiny_noqknorm_s0/done" not in names


@pytest.mark.integration  # trains one tiny model, in three calls
def test_paused_trainings_resume_in_the_next_call_and_finished_ones_are_skipped(tmp_path):
    """Resumable in chunks (issue 29): with ``--max-wall-s`` every training pauses, saving its
    state; the same command on the same ``--work`` resumes it to the end, and a third call trains
    nothing, yet repacks every weight into its new ``$OUT``. A size may name its own variants."""
    import pydoc_data.topics

    from safetensors.torch import load_file

    source = tmp_path / "src.txt"
    source.write_text(
        "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60_000]
    )
    build_ladder_corpus(recipe(source), tmp_path / "corpus", tmp_path / "cache", world=tiny_world())
    argv = ["--corpus", str(tmp_path / "corpus"), "--work", str(tmp_path / "w")]
    argv += ["--sizes", "tiny:noqknorm", "--reason-variants", "none"]
    argv += ["--device", "cpu"]

    def call(n: int, *extra: str) -> dict:
        main([*argv, "--out", str(tmp_path / f"out{n}"), *extra])
        return json.loads((tmp_path / f"out{n}" / "summary.json").read_text())["runs"]

    first = call(1, "--max-wall-s", "0")
    assert set(first) == {"tiny_noqknorm_s0"}  # not the default variants' qknorm
    assert {r["state"] for r in first.values()} == {"paused at step 1 (rerun to resume)"}
    assert not (tmp_path / "out1" / "tiny_noqknorm.tar.gz").exists()
    second = call(2)
    assert {r["state"] for r in second.values()} == {"done"}
    third = call(3)
    assert all(r == {"state": "done", "kind": "eval", "call": "earlier"} for r in third.values())
    with tarfile.open(tmp_path / "out3" / "tiny_noqknorm.tar.gz") as tar:
        assert "tiny_noqknorm_s0/model.safetensors" in tar.getnames()
    summary = json.loads(
        (tmp_path / "w" / "runs" / "tiny_noqknorm_s0" / "training_summary.json").read_text()
    )
    assert summary["step"] == summary["config"]["lm"]["max_steps"]
    weights = tmp_path / "w" / "runs" / "tiny_noqknorm_s0" / "model.safetensors"
    assert load_file(weights)
    with tarfile.open(tmp_path / "out3" / "results.tar.gz") as tar:
        rows = list(csv.DictReader(io.TextIOWrapper(tar.extractfile("tables/runs.csv"))))
    assert rows[0]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
