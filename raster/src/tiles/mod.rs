//! Map tiles (WebMercatorQuad) from COGs: tile math, TileJSON 3.0 and WMTS documents, rendering.
pub mod inspect;
pub mod render;
pub mod tms;
pub mod vsi;
pub mod window;
