"""Read back what an offline wandb run recorded (its ``run-*.wandb`` file), so tests check the
run itself, not what the suite meant to send: wandb 0.31 writes no summary or config file for an
offline run, and has no Python reader of its log. The log is LevelDB's record format (7-byte file
header; 32 KiB blocks of records with a CRC, a length and a FULL/FIRST/MIDDLE/LAST type) holding
wandb's ``Record`` protobufs."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = struct.Struct("<IHB")  # crc32, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    """The run's group and job type, its config and its latest summary, key by key."""

    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def records(path: Path) -> Iterator[bytes]:
    """The log's records, chunks joined."""
    data = path.read_bytes()
    index, pending = 7, b""
    while index + HEADER.size <= len(data):
        left = BLOCK - index % BLOCK
        _, length, kind = HEADER.unpack_from(data, index)
        if left < HEADER.size or (kind == 0 and length == 0):  # the block's zero padding
            index += left
            continue
        chunk = data[index + HEADER.size : index + HEADER.size + length]
        index += HEADER.size + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            yield pending


def offline_run(run_dir: Path) -> OfflineRun:
    """What the offline run in ``run_dir`` (``wandb/offline-run-*``) recorded."""
    (log,) = run_dir.glob("run-*.wandb")
    run = OfflineRun()
    for data in records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type = record.run.run_group, record.run.job_type
            run.config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "summary":
            run.summary.update({i.key: json.loads(i.value_json) for i in record.summary.update})
    return run
