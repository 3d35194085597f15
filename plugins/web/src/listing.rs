//! The page listing a directory that has no index file: names HTML-escaped, links
//! percent-encoded, directories first, then files, each group sorted by name.

use crate::request_path::{encode_name, RequestPath};
use crate::root::Listed;
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Lists at most this many entries; a bigger directory says how many were left out.
pub const MAX_ENTRIES: usize = 10_000;

/// The HTML page for the directory `path`, showing `entries` of the `count` it holds (the
/// first in name order, when there are more than [`MAX_ENTRIES`]).
pub fn render(path: &RequestPath, mut entries: Vec<Listed>, count: usize) -> String {
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    let shown = html_escape(&display(path));
    let mut page = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Index of {shown}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.size{{text-align:right}}</style>\n\
         </head>\n<body>\n<h1>Index of {shown}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Last modified (UTC)</th></tr>\n"
    );
    if path.last_name().is_some() {
        page.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for entry in &entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let size = match entry.is_dir {
            true => "-".to_string(),
            false => entry.len.to_string(),
        };
        let modified: DateTime<Utc> = entry.modified.into();
        // The href is percent-encoded, so it holds nothing HTML would read as markup.
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{}{slash}\">{}{slash}</a></td><td class=\"size\">{size}</td><td>{}</td></tr>",
            encode_name(&entry.name),
            html_escape(&String::from_utf8_lossy(&entry.name)),
            modified.format("%Y-%m-%d %H:%M:%S"),
        );
    }
    page.push_str("</table>\n");
    if count > MAX_ENTRIES {
        let _ = writeln!(
            page,
            "<p>{count} entries: only the first {MAX_ENTRIES} in name order are listed.</p>"
        );
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// The path as a person reads it: decoded, between slashes.
fn display(path: &RequestPath) -> String {
    let relative = path.relative();
    let text = relative.to_string_lossy();
    match text.is_empty() {
        true => "/".to_string(),
        false => format!("/{text}/"),
    }
}

pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn entry(name: &str, is_dir: bool) -> Listed {
        Listed {
            name: name.as_bytes().to_vec(),
            is_dir,
            len: 7,
            modified: UNIX_EPOCH,
        }
    }

    #[test]
    fn names_are_escaped_and_links_encoded() {
        let path = RequestPath::parse("/d%3Cir/").unwrap();
        let page = render(
            &path,
            vec![
                entry("<b>x&\"'.txt", false),
                entry("a#b?c.txt", false),
                entry("sub", true),
            ],
            3,
        );
        assert!(page.contains("<title>Index of /d&lt;ir/</title>"), "{page}");
        assert!(
            page.contains("<a href=\"%3Cb%3Ex%26%22%27.txt\">&lt;b&gt;x&amp;&quot;&#39;.txt</a>"),
            "{page}"
        );
        assert!(
            page.contains("<a href=\"a%23b%3Fc.txt\">a#b?c.txt</a>"),
            "{page}"
        );
        assert!(
            page.find("sub/").unwrap() < page.find("a%23b").unwrap(),
            "directories first"
        );
        assert!(page.contains("<a href=\"../\">"));
        assert!(!page.contains("<b>x"));
    }
}
