"""Fast CPU inference: nnU-Net predictor with center-first adaptive tiling, body crop, backends, fast export."""
