"""Networks: the light 3D U-Net cost helpers and Swin-X Seg."""
