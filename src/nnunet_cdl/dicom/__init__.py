"""DICOM in and out: CT series found and read as volumes (`series`), DICOM SEG written from label maps (`seg`)."""
