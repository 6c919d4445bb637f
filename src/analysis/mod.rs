//! Analysis outputs: figures (line plots, heat maps) drawn with a small embedded bitmap font.

pub mod font;
pub mod plot;
