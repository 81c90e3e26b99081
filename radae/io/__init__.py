"""Reading images and masks into :class:`radae.io.volume.Volume`.

``read_image(path)`` takes a NIfTI/NRRD/MHA file or a DICOM series folder; ``read_mask`` takes a label
image, a DICOM RTSTRUCT (ROI by name) or a DICOM SEG (segment by number or label), always returned as a
uint8 0/1 Volume on the image grid.
"""
from radae.io.readers import read_image, read_mask
from radae.io.volume import Volume

__all__ = ["Volume", "read_image", "read_mask"]
