//! Markdown to HTML for agent replies. Replies are untrusted text (a model can
//! be talked into writing `<script>`), so the HTML is always sanitised with
//! ammonia's allow-list after rendering: no script, event handler or
//! `javascript:` URL survives.

use pulldown_cmark::{html, Options, Parser};

pub fn render(markdown: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    let parser = Parser::new_ext(markdown, opts);
    let mut out = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut out, parser);
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&out)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn renders_markdown() {
        let h = render("# Hi\n\n**bold** `code`\n\n- a\n- b");
        assert!(h.contains("<h1>Hi</h1>"));
        assert!(h.contains("<strong>bold</strong>"));
        assert!(h.contains("<li>a</li>"));
    }

    #[test]
    fn strips_script_and_handlers() {
        let h = render(
            "<script>alert(1)</script><img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))",
        );
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("onerror"), "{h}");
        assert!(h.contains("click"), "{h}");
        assert!(!h.contains("href=\"javascript"), "{h}");
    }
}
