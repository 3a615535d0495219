//! The login URL as a QR code, so a phone can open it: an SVG (runs of dark modules as one path)
//! in a `data:` URI, which the page's CSP allows for images and which needs no script.

use qrcodegen::{QrCode, QrCodeEcc};

/// Light modules around the code, as the QR spec asks.
const QUIET_ZONE: i32 = 4;

/// `data:image/svg+xml,…` of `text` as a QR code; `None` if it is too long for a QR code.
pub fn svg_data_uri(text: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let n = qr.size() + 2 * QUIET_ZONE;
    let mut path = String::new();
    for y in 0..qr.size() {
        let mut x = 0;
        while x < qr.size() {
            if !qr.get_module(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < qr.size() && qr.get_module(x, y) {
                x += 1;
            }
            path.push_str(&format!(
                "M{} {}h{}v1h-{}z",
                start + QUIET_ZONE,
                y + QUIET_ZONE,
                x - start,
                x - start
            ));
        }
    }
    let svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {n} {n}' shape-rendering='crispEdges'>\
         <rect width='{n}' height='{n}' fill='white'/><path d='{path}'/></svg>"
    );
    // Only these need escaping in a data URI of this SVG (no '"', no '%' in it otherwise).
    let encoded = svg.replace('%', "%25").replace('#', "%23").replace('<', "%3C").replace('>', "%3E");
    Some(format!("data:image/svg+xml,{encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_url_becomes_an_svg_data_uri() {
        let uri = svg_data_uri("https://control.tinytail.test/register/AbCdEf0123456789").unwrap();
        assert!(uri.starts_with("data:image/svg+xml,%3Csvg "));
        assert!(!uri.contains('<') && !uri.contains('"') && !uri.contains('#'));
        // Version 3 or 4 at this length: 29 or 33 modules plus the quiet zone.
        assert!(
            uri.contains("viewBox='0 0 37 37'") || uri.contains("viewBox='0 0 41 41'"),
            "{}",
            &uri[..120]
        );
        // The three finder patterns start with a run of 7 dark modules at the quiet zone's corner.
        assert!(uri.contains("M4 4h7v1h-7z"));
        assert!(svg_data_uri(&"x".repeat(5000)).is_none(), "too long for any QR code");
    }
}
