//! Reports: charts rendered in Rust (plotters, SVG) assembled into one self-contained HTML
//! page that opens offline (thumbnails are embedded as data URIs).

pub mod charts;
pub mod html;
pub mod verification;
