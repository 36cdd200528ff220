"""DICOM Segmentation objects from label maps, with highdicom: one binary segment per organ present.

Each segment carries SNOMED CT codes (category Anatomical Structure, the organ as its type, Right / Left as the
type modifier for paired organs, as DICOM CID 7154 / 7166 code them; looked up in pydicom's DICOM code
dictionary), and the algorithm's identification (family Artificial Intelligence, name `nnunet-cdl`, its version,
the model). Patient, study and frame of reference come from the source series, which the SEG references image by
image. Binary, not fractional: the predictor's output is a label map. Frames without any segment are left out
(highdicom's default, and what viewers expect), so a reader rebuilds the segments' slab of the series' grid.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_cdl import __version__
from nnunet_cdl.dicom.series import DicomSeries
from nnunet_cdl.errors import CdlError
from nnunet_cdl.io import atomic_path
from nnunet_cdl.labels import ORGANS


@dataclass(frozen=True)
class OrganCode:
    """SNOMED CT concept of an organ (pydicom code dictionary keyword) and its laterality, if any."""

    keyword: str
    laterality: str | None = None


ORGAN_CODES: dict[int, OrganCode] = {
    1: OrganCode("Liver"), 2: OrganCode("Kidney", "Right"), 3: OrganCode("Spleen"), 4: OrganCode("Pancreas"),
    5: OrganCode("Aorta"), 6: OrganCode("InferiorVenaCava"), 7: OrganCode("AdrenalGland", "Right"),
    8: OrganCode("AdrenalGland", "Left"), 9: OrganCode("Gallbladder"), 10: OrganCode("Esophagus"),
    11: OrganCode("Stomach"), 12: OrganCode("Duodenum"), 13: OrganCode("Kidney", "Left"),
}
"""FLARE label id -> coded concept of the organ."""


def segment_descriptions(organs: list[int], model_name: str) -> list:
    """highdicom segment descriptions, numbered 1.. in the order of `organs` (FLARE label ids)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="nnunet-cdl", version=__version__, family=codes.cid7162.ArtificialIntelligence,
        source=model_name, parameters=None,
    )
    descriptions = []
    for number, organ in enumerate(organs, start=1):
        code = ORGAN_CODES[organ]
        modifier = getattr(codes.SCT, code.laterality) if code.laterality else None
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=ORGANS[organ].replace("_", " "),
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=getattr(codes.SCT, code.keyword),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            tracking_uid=hd.UID(), tracking_id=ORGANS[organ],
        )
        if modifier is not None:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(modifier.value, modifier.scheme_designator, modifier.meaning)]
        descriptions.append(description)
    return descriptions


def write_dicom_seg(path: str | Path, series: DicomSeries, labels: np.ndarray, model_name: str) -> list[int]:
    """Write `labels` (z, y, x; z in `series.files` order, y = rows, x = columns; FLARE ids) as a DICOM SEG
    referencing `series`; returns the organs written (one segment each; an empty map gets no file, `CdlError`)."""
    import highdicom as hd
    import pydicom

    if labels.shape[0] != len(series.files):
        raise CdlError(f"{series.folder}: label map has {labels.shape[0]} slices, the series {len(series.files)}")
    organs = [int(v) for v in np.unique(labels) if v in ORGAN_CODES]
    if not organs:
        raise CdlError(f"{series.folder}: no organ found; a DICOM SEG needs at least one segment")
    numbers = np.zeros(max(ORGAN_CODES) + 1, dtype=np.uint8)
    numbers[organs] = np.arange(1, len(organs) + 1)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    for source in sources:  # in memory only: an empty value means the default repertoire, which highdicom refuses
        if "SpecificCharacterSet" in source and not source.SpecificCharacterSet:
            del source.SpecificCharacterSet
    with warnings.catch_warnings():  # the source's own PatientName is copied as it is, odd format or not
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        segmentation = _segmentation(hd, sources, numbers[np.clip(labels, 0, max(ORGAN_CODES))], organs, series,
                                     model_name)
    with atomic_path(Path(path)) as tmp:
        segmentation.save_as(tmp)
    return organs


def _segmentation(hd, sources: list, pixel_array: np.ndarray, organs: list[int], series: DicomSeries,
                  model_name: str):
    """The highdicom Segmentation of `pixel_array` (segment numbers per source frame); its series number is the
    source's plus 1000, so viewers list it beside its CT."""
    number = int(series.series_number) if series.series_number.lstrip("-").isdigit() else 0
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(organs, model_name),
        series_instance_uid=hd.UID(), series_number=number + 1000, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="nnunet-cdl", manufacturer_model_name=model_name,
        software_versions=__version__, device_serial_number="not applicable",
        series_description=f"nnunet-cdl {model_name}"[:64], content_label="ORGANS",
        content_creator_name="nnunet-cdl^",
    )
