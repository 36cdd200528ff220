"""What one `nnunet-cdl consensus` run compares and where it writes: sources, labels, dataset naming."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_cdl.consensus.tiers import DEFAULT_REFINE, DEFAULT_TRUST_MARGIN, ConsensusConfig, Thresholds
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import NIFTI_ENDING, read_json
from nnunet_cdl.labels import nnunet_labels_dict

SOURCE_KINDS: tuple[str, ...] = ("labels", "reference")


@dataclass(frozen=True)
class Source:
    """A folder of candidate labels named like labelsTr; `kind` "labels" (challenge) or "reference" (our model)."""

    name: str
    folder: Path
    kind: str


@dataclass(frozen=True)
class ConsensusSettings:
    """A consensus run's inputs and outputs; stored in part files so that `consensus-merge` needs no flags."""

    images: Path
    sources: tuple[Source, ...]
    out: Path
    dataset_id: int
    dataset_name: str
    labels: dict[str, int]
    """The output dataset.json's labels; its values are the allowed label values (others are cleaned to 0)."""
    config: ConsensusConfig
    file_ending: str
    dataset_json_extra: dict[str, Any]
    """Keys copied from the input dataset.json (channel_names, ...)."""
    keep_erroneous: bool
    reference_votes_only: bool

    @property
    def allowed(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.labels.values())))

    @property
    def dataset_folder(self) -> Path:
        return self.out / f"Dataset{self.dataset_id:03d}_{self.dataset_name}"

    @property
    def parts_folder(self) -> Path:
        return self.out / f"Dataset{self.dataset_id:03d}_{self.dataset_name}.parts"

    @property
    def challenge(self) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.sources) if s.kind == "labels")

    @property
    def selectable(self) -> tuple[bool, ...]:
        return tuple(s.kind == "labels" or not self.reference_votes_only for s in self.sources)

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "images": str(self.images), "out": str(self.out), "dataset_id": self.dataset_id,
            "dataset_name": self.dataset_name, "labels": self.labels, "file_ending": self.file_ending,
            "sources": [{"name": s.name, "folder": str(s.folder), "kind": s.kind} for s in self.sources],
            "config": {"ds_mode": c.ds_mode, "tier_mode": c.tier_mode, "refine": c.refine,
                       "trust_margin": c.trust_margin,
                       "thresholds": {"easy": c.thresholds.easy, "hard": c.thresholds.hard},
                       "quantiles": {"easy": c.quantiles.easy, "hard": c.quantiles.hard}},
            "dataset_json_extra": self.dataset_json_extra, "keep_erroneous": self.keep_erroneous,
            "reference_votes_only": self.reference_votes_only,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ConsensusSettings:
        c = d["config"]
        config = ConsensusConfig(
            c["ds_mode"], c["tier_mode"], Thresholds(**c["thresholds"]), Thresholds(**c["quantiles"]),
            c.get("refine", DEFAULT_REFINE), float(c.get("trust_margin", DEFAULT_TRUST_MARGIN)),
        )
        return cls(
            images=Path(d["images"]), out=Path(d["out"]), dataset_id=int(d["dataset_id"]),
            dataset_name=d["dataset_name"], labels={k: int(v) for k, v in d["labels"].items()},
            file_ending=d["file_ending"], config=config,
            sources=tuple(Source(s["name"], Path(s["folder"]), s["kind"]) for s in d["sources"]),
            dataset_json_extra=d["dataset_json_extra"], keep_erroneous=bool(d["keep_erroneous"]),
            reference_votes_only=bool(d["reference_votes_only"]),
        )


def parse_allowed_labels(text: str) -> tuple[int, ...]:
    """`"0-13"` or `"0,1,2,5"` (or a mix, `"0-3,5"`) -> sorted label values; 0 is always included."""
    values: set[int] = {0}
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise CdlError(f"--allowed-labels: cannot parse {part!r}; write e.g. 0-13 or 0,1,2,5")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low or high > 65535:
            raise CdlError(f"--allowed-labels: bad range {part!r}")
        values.update(range(low, high + 1))
    return tuple(sorted(values))


def source_list(labels: list[Path], references: list[Path]) -> tuple[Source, ...]:
    """Sources named after their folders, challenge labels first; at least two sources with distinct names."""
    sources = [Source(Path(p).name, Path(p), "labels") for p in labels]
    sources += [Source(Path(p).name, Path(p), "reference") for p in references]
    for source in sources:
        if not source.folder.is_dir():
            raise CdlError(f"{source.folder}: label folder not found")
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CdlError(f"sources must have distinct folder names (a source's name is its folder's name): {duplicates}")
    if len(sources) < 2:
        raise CdlError("consensus needs at least two candidate label folders (--labels DIR1 DIR2 ..., --reference)")
    return tuple(sources)


def input_dataset_json(images: Path) -> dict[str, Any] | None:
    """The dataset.json of the dataset that holds `images` (…/DatasetXXX/imagesTr -> …/DatasetXXX/dataset.json)."""
    path = images.parent / "dataset.json"
    return read_json(path) if path.is_file() else None


def default_dataset_name(images: Path) -> str:
    """`…/Dataset001_Flare/imagesTr` -> `FlareConsensus`; otherwise `Consensus`."""
    match = re.fullmatch(r"Dataset\d+_(.+)", images.resolve().parent.name)
    return f"{match.group(1)}Consensus" if match else "Consensus"


def labels_and_extra(base: dict[str, Any] | None, allowed: tuple[int, ...] | None,
                     images: Path) -> tuple[dict[str, int], dict[str, Any], str]:
    """(labels dict, dataset.json keys to keep, file ending) from the input dataset.json or `--allowed-labels`.

    Labels default to the input dataset.json's, else the 13 FLARE organs.
    """
    ending = str(base.get("file_ending", NIFTI_ENDING)) if base else NIFTI_ENDING
    extra: dict[str, Any] = {"channel_names": {"0": "CT"}}
    if base:
        extra = {k: v for k, v in base.items() if k not in ("labels", "numTraining", "file_ending", "name")}
    if allowed is not None:
        names = {v: k for k, v in (base or {}).get("labels", nnunet_labels_dict()).items()}
        labels = {names.get(v, "background" if v == 0 else f"label_{v}"): v for v in allowed}
    elif base and "labels" in base:
        try:
            labels = {str(k): int(v) for k, v in base["labels"].items()}
        except (TypeError, ValueError) as exc:
            raise CdlError(f"{images.parent / 'dataset.json'}: labels must map names to single integers") from exc
    else:
        labels = nnunet_labels_dict()
    return labels, extra, ending
