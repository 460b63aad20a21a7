//! A minimal builder for self-contained HTML pages.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;

use crate::data::image_io::load_rgb;

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A PNG as a `data:` URI.
pub fn png_data_uri(png: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png))
}

/// Encodes an RGB image as PNG.
pub fn encode_png(img: &image::RgbImage) -> Option<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
}

/// A thumbnail of the image at `path` (longest side `size`) as a data URI; `None` if the
/// image cannot be read.
pub fn thumbnail_uri(path: &Path, size: u32) -> Option<String> {
    let img = load_rgb(path).ok()?;
    let t = image::imageops::thumbnail(&img, size, size * img.height() / img.width().max(1));
    encode_png(&t).map(|p| png_data_uri(&p))
}

/// An HTML page assembled from sections.
pub struct Page {
    title: String,
    body: String,
}

impl Page {
    pub fn new(title: &str) -> Self {
        Page { title: title.to_string(), body: String::new() }
    }

    pub fn heading(&mut self, level: u8, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<h{level}>{}</h{level}>", escape(text));
        self
    }

    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<p>{}</p>", escape(text));
        self
    }

    /// Raw HTML (the caller escapes).
    pub fn raw(&mut self, html: &str) -> &mut Self {
        self.body.push_str(html);
        self.body.push('\n');
        self
    }

    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) -> &mut Self {
        self.body.push_str("<table><tr>");
        for h in headers {
            let _ = write!(self.body, "<th>{}</th>", escape(h));
        }
        self.body.push_str("</tr>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                let _ = write!(self.body, "<td>{}</td>", escape(c));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
        self
    }

    /// Charts side by side.
    pub fn figures(&mut self, svgs: &[String]) -> &mut Self {
        self.body.push_str("<div class=\"figs\">");
        for s in svgs {
            let _ = write!(self.body, "<div class=\"fig\">{s}</div>");
        }
        self.body.push_str("</div>\n");
        self
    }

    pub fn render(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
th{{background:#f3f3f3}}.figs{{display:flex;flex-wrap:wrap;gap:12px}}.fig svg{{max-width:100%;height:auto}}\
.thumbs{{display:flex;flex-wrap:wrap;gap:14px}}.pair{{border:1px solid #ddd;padding:6px;text-align:center;font-size:12px}}\
.pair img{{width:96px;height:96px;object-fit:contain;margin:2px}}.crop img{{width:112px;margin:3px}}\
</style></head><body>\n<h1>{t}</h1>\n{b}</body></html>\n",
            t = escape(&self.title),
            b = self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_renders() {
        assert_eq!(escape("<a&b>\"'"), "&lt;a&amp;b&gt;&quot;&#39;");
        let mut p = Page::new("T<1>");
        p.heading(2, "x").paragraph("a<b").table(&["h"], &[vec!["1".into()]]);
        let html = p.render();
        assert!(html.contains("<title>T&lt;1&gt;</title>") && html.contains("<td>1</td>") && html.contains("a&lt;b"));
        assert!(png_data_uri(&[1, 2, 3]).starts_with("data:image/png;base64,AQID"));
    }
}
