//! What the models share, in one place: the torch.nn layers they are built of (`layers`:
//! Conv2d, Linear, GroupNorm, LayerNorm), diffusers' blocks that the U-Net and the VAE both use
//! (`attention`: Attention and FeedForward; `resnet`: ResnetBlock2D, Downsample2D, Upsample2D),
//! the visitor every module calls at its end (`visit`: taps, early stop), and the loading checks
//! of a diffusers component folder (`load`). Configs are parsed by src/io/config.rs.

pub mod attention;
pub mod layers;
pub mod load;
pub mod resnet;
pub mod visit;
