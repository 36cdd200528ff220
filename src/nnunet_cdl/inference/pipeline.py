"""Per-case pipeline of `nnUNetCdlPredictor.predict_from_files`: read -> body crop -> preprocess -> adaptive
sliding window -> export -> post-process -> atomic write, timed per stage, one case's failure isolated."""

from __future__ import annotations

import copy
import csv
import os
import pickle
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_cdl.dicom.series import DicomSeries
from nnunet_cdl.errors import CdlError
from nnunet_cdl.inference.export import exports_inplane_linear, fast_labels, paste_box, stock_labels
from nnunet_cdl.inference.preprocess import fast_preprocess, fast_supported
from nnunet_cdl.inference.readers import read_images
from nnunet_cdl.inference.record import CaseRecord, peak_rss_mb, release_free_memory, rss_mb
from nnunet_cdl.image_checks import check_image_file, check_image_size, ct_value_problems
from nnunet_cdl.io import atomic_path, read_geometry, write_json

SITK_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".gipl", ".gipl.gz")


def case_name(first_file: str, file_ending: str) -> str:
    """`CASE_0000.nii.gz` -> `CASE` (nnU-Net's channel naming)."""
    name = os.path.basename(first_file)
    return name[: -(len(file_ending) + 5)] if name.endswith(file_ending) else name


CaseInput = list[str] | DicomSeries
"""A case's channel files (nnU-Net's layout), or one checked DICOM CT series."""


def series_as_nifti(series: DicomSeries, folder: str) -> list[str]:
    """The series read (HU, LPS) and written uncompressed into `folder` as `<case>_0000.nii`, for the plans'
    own reader: a DICOM series then reaches the network exactly as its NIfTI conversion would."""
    path = os.path.join(folder, f"{series.case}_0000.nii")
    sitk.WriteImage(series.read(), path, useCompression=False)
    return [path]


def read_case(predictor, files: CaseInput, record: CaseRecord, keep_integers: bool = False) -> tuple[np.ndarray, dict]:
    """Image (C, z, y, x) float32 (with `keep_integers`, unscaled integer files in their stored type, as
    `readers.read_images`) and reader properties; `CdlError` naming the file on any problem.

    Refused: missing, truncated or unreadable files, zero voxel sizes, shapes and voxel sizes no CT has (unless
    `settings.allow_any_size`), non-finite or constant values. Suspicious values are added to `record.warnings`.
    A DICOM series goes through a temporary NIfTI file (`series_as_nifti`), removed once read.
    """
    if isinstance(files, DicomSeries):
        with tempfile.TemporaryDirectory(prefix="nnunet-cdl-dicom-") as folder:
            converted = series_as_nifti(files, folder)
            try:
                return read_case(predictor, converted, record, keep_integers)
            except CdlError as exc:
                raise CdlError(str(exc).replace(converted[0], f"{files.folder} (series {files.series_uid})")) from exc
    for path in files:
        check_image_file(path)
        if str(path).endswith(SITK_ENDINGS):
            read_geometry(path)  # header checks: 3-D, one component, positive spacing
    reader = predictor.plans_manager.image_reader_writer_class()
    try:
        data, properties = read_images(reader, files, keep_integers)
    except Exception as exc:  # nnU-Net's readers raise assorted errors for unreadable or inconsistent files
        raise CdlError(f"{files[0]}: cannot read ({type(exc).__name__}: {exc})") from exc
    expected = predictor._input_channels()
    if data.shape[0] != expected:
        raise CdlError(f"{files[0]}: the model expects {expected} channel file(s) per case, got {data.shape[0]}")
    if not predictor.settings.allow_any_size:
        check_image_size(files[0], tuple(data.shape[1:]), tuple(float(s) for s in properties["spacing"]))
    if predictor.configuration_manager.normalization_schemes[0] == "CTNormalization":
        error, found = ct_value_problems(data[0])
        if error is not None:
            raise CdlError(f"{files[0]}: {error}")
        record.warnings.extend(found)
    return data, properties


def predict_case(predictor, files: CaseInput, output_truncated: str | None, save_probabilities: bool, record: CaseRecord):
    """Run one case; returns the segmentation (z, y, x) in file axis order when `output_truncated` is None."""
    pm, cm = predictor.plans_manager, predictor.configuration_manager
    settings = predictor.settings
    fast = settings.export == "fast" and fast_supported(cm)
    with record.stage("reading"):
        data, properties = read_case(predictor, files, record, keep_integers=fast)
    full_shape = data.shape[1:]
    record.image_shape = [int(s) for s in full_shape]
    with record.stage("preprocessing"):
        box = predictor.crop_to_body(data, properties["spacing"])
        record.body_box = [[int(s.start), int(s.stop)] for s in box]
        crop = data[(slice(None), *box)]
        spacing = [properties["spacing"][axis] for axis in pm.transpose_forward]
        linear_export = fast and exports_inplane_linear(cm.configuration, spacing)
        if fast:
            network_input, net_properties = fast_preprocess(crop, properties, pm, cm, settings.threads)
        else:
            preprocessor = cm.preprocessor_class(verbose=False)
            array, _, net_properties = preprocessor.run_case_npy(
                crop, None, copy.deepcopy(properties), pm, cm, predictor.dataset_json
            )
            network_input = array
        del data, crop
    record.network_shape = [int(s) for s in network_input.shape[1:]]
    with record.stage("network"):
        dense_logits = not fast or save_probabilities
        result = predictor.adaptive_sliding_window(network_input, keep_logits=dense_logits,
                                                   boundary_logits=linear_export and not dense_logits)
        record.backend = predictor.backend_name  # `auto` is resolved by the first window
        record.windows = {
            "grid": result.grid,
            "step_size": predictor.tile_step_size,
            "planned": result.windows_planned,
            "run": result.windows_run,
            "skipped": result.windows_skipped,
            "slabs": {r: result.slab_reasons.count(r) for r in sorted(set(result.slab_reasons))},
            "per_slab": [
                {"reason": s.reason, "center": [list(axis) for axis in s.center], "windows_run": s.windows_run,
                 "center_voxels": {str(label): n for label, n in s.center_voxels.items()},
                 **({} if s.located_voxels is None else
                    {"located_voxels": {str(label): n for label, n in s.located_voxels.items()}})}
                for s in result.slabs
            ],
        }
        del network_input
    with record.stage("exporting"):
        probabilities = None
        if fast and not save_probabilities:
            labels = fast_labels(predictor.postprocess(result.labels), net_properties, pm,
                                 result.logits if linear_export else None)
        else:
            labels, probabilities = stock_labels(
                result.logits, net_properties, pm, cm, predictor.label_manager, settings.threads, save_probabilities
            )
            labels = predictor.postprocess(labels)
        del result
        segmentation = paste_box(labels, box, full_shape)
        if probabilities is not None:
            full = np.zeros((probabilities.shape[0], *full_shape), dtype=probabilities.dtype)
            full[0] = 1
            full[(slice(None), *box)] = probabilities
            probabilities = full
    if output_truncated is None:
        return segmentation
    with record.stage("writing"):
        writer = pm.image_reader_writer_class()
        if settings.output_type == "dicom-seg":
            write_seg_for_series(predictor, files, segmentation, properties, output_truncated + ".dcm")
            return None
        with atomic_path(output_truncated + predictor.dataset_json["file_ending"]) as tmp:
            writer.write_seg(segmentation, str(tmp), properties)
        if probabilities is not None:
            with atomic_path(output_truncated + ".npz") as tmp:
                np.savez_compressed(tmp, probabilities=probabilities)
            with atomic_path(output_truncated + ".pkl") as tmp:
                tmp.write_bytes(pickle.dumps(net_properties))
    return None


def write_seg_for_series(predictor, series: CaseInput, segmentation: np.ndarray, properties: dict, path: str) -> None:
    """`segmentation` (the plans' reader's axis order) as a DICOM SEG referencing `series`. The label map goes
    through the plans' own writer into a temporary NIfTI read back by SimpleITK, whose (z, y, x) order is the
    series' checked slice order, rows and columns, whatever reader the model was trained with."""
    from nnunet_cdl.dicom.seg import write_dicom_seg

    if not isinstance(series, DicomSeries):
        raise CdlError(f"{path}: --output-type dicom-seg needs DICOM input (a source series to reference)")
    with tempfile.TemporaryDirectory(prefix="nnunet-cdl-seg-") as folder:
        nifti = os.path.join(folder, "seg.nii")
        predictor.plans_manager.image_reader_writer_class().write_seg(segmentation, nifti, properties)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(nifti))
    folder = getattr(predictor, "model_folder", None)
    write_dicom_seg(path, series, labels, Path(folder).name if folder is not None else predictor.trainer_name)


def write_folder_metadata(predictor, output_folder: str) -> None:
    """dataset.json and plans.json beside the predictions, as nnU-Net writes them (its tools need them)."""
    write_json(Path(output_folder) / "dataset.json", predictor.dataset_json)
    write_json(Path(output_folder) / "plans.json", predictor.plans_manager.plans)


def run_cases(predictor, lists: Sequence[CaseInput], outputs: list[str] | None, save_probabilities: bool, output_arg,
              problems: Sequence[tuple[str, str, str]] = ()):
    """Predict every case; log one line per case, write its record; raise `CdlError` at the end if any failed.

    `problems` are inputs refused before reading (case, file, reason): each fails as a case of its own. The output
    folder's dataset.json and plans.json are written after the first prediction, so a run where every case
    fails leaves no output behind.
    """
    settings = predictor.settings
    ending = predictor.dataset_json["file_ending"]
    output_ending = ".dcm" if settings.output_type == "dicom-seg" else ending
    records, segmentations = [], []
    count = len(lists) + len(problems)
    metadata_written = False
    for index, (case, path, reason) in enumerate(problems, start=1):
        record = CaseRecord(case=case, inputs=[path], output=None, status="failed", error=f"{path}: {reason}")
        predictor.log(record.progress_line(index, count))
        if settings.record_dir is not None:
            write_json(Path(settings.record_dir) / f"{record.case}.json", record.as_dict())
        records.append(record)
    for index, files in enumerate(lists, start=len(problems) + 1):
        out = outputs[index - 1 - len(problems)] if outputs else None
        dicom = isinstance(files, DicomSeries)
        record = CaseRecord(
            case=files.case if dicom else case_name(files[0], ending),
            inputs=[str(files.folder)] if dicom else [str(f) for f in files], output=out + output_ending if out else None,
            backend=predictor.backend_name, threads=settings.threads, export=settings.export,
            postprocess=settings.postprocess.enabled, predictor=type(predictor).__name__,
        )
        already_started = predictor.first_window_after_start_s is not None
        try:
            segmentation = predict_case(predictor, files, out, save_probabilities, record)
            if out is None:
                segmentations.append(segmentation)
            elif not metadata_written and settings.output_type == "nifti":
                write_folder_metadata(predictor, output_arg if isinstance(output_arg, str)
                                      else os.path.dirname(out) or os.curdir)
                metadata_written = True
        except Exception as exc:  # one bad case must not stop the others; it is reported and fails the run
            record.status = "failed"
            record.error = str(exc) if isinstance(exc, CdlError) else f"{record.inputs[0]}: {type(exc).__name__}: {exc}"
        release_free_memory()
        if not already_started:
            record.first_window_after_start_s = predictor.first_window_after_start_s
        record.peak_rss_mb = round(peak_rss_mb(), 1)
        record.rss_mb = round(rss_mb(), 1)
        predictor.log(record.progress_line(index, count))
        if settings.record_dir is not None:
            write_json(Path(settings.record_dir) / f"{record.case}.json", record.as_dict())
        records.append(record)
    predictor.last_records = records
    failed = [r.case for r in records if r.status != "ok"]
    if failed:
        raise CdlError(f"{len(failed)} of {count} case(s) failed: {', '.join(failed)} (see the lines above)")
    return segmentations if outputs is None else records


CASES_COLUMNS = ("case", "status", "patient_id", "study_date", "study_instance_uid", "series_number",
                 "series_instance_uid", "series_description", "folder", "slices", "left_out", "error")


def write_cases_csv(path: Path, series: Sequence[DicomSeries], records: Sequence[CaseRecord]) -> None:
    """`cases.csv` beside DICOM predictions: one row per series found (written atomically; nothing when every
    series was refused, so a failed run leaves no output)."""
    outcome = {record.case: record for record in records}
    if not any(r.status == "ok" for r in records):
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CASES_COLUMNS)
        for item in series:
            record = outcome.get(item.case)
            status = record.status if record is not None else ("failed" if item.error else "skipped")
            error = record.error if record is not None and record.error else (item.error or "")
            writer.writerow([item.case, status, item.patient_id, item.study_date, item.study_uid,
                             item.series_number, item.series_uid, item.series_description, str(item.folder),
                             len(item.files), "; ".join(item.skipped), error])
