//! `GET /demo`: the demo page (`page.html`), one self-contained HTML file with its script and
//! style inline; its content security policy lets it reach nothing but the server it came from,
//! so it works offline and shows that it needs nothing else.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::config::Config;

const PAGE: &str = include_str!("page.html");
/// Where `page.html` takes its settings.
const SETTINGS_MARK: &str = "/*DEMO_SETTINGS*/{}";

/// The page, with the settings it shows filled in.
#[derive(Clone)]
pub struct DemoPage {
    html: String,
}

impl DemoPage {
    pub fn new(config: &Config) -> DemoPage {
        let settings = json!({
            "realtime": config.realtime.enabled,
            "namespace": config.relay.messages_namespace,
        });
        DemoPage {
            html: PAGE.replacen(SETTINGS_MARK, &settings.to_string(), 1),
        }
    }

    /// The route `/demo`.
    pub fn router(&self) -> Router {
        let html = self.html.clone();
        Router::new().route(
            "/demo",
            get(move || {
                let html = html.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                            (header::CACHE_CONTROL, "no-store"),
                            (
                                header::CONTENT_SECURITY_POLICY,
                                "default-src 'none'; script-src 'unsafe-inline'; \
                                 style-src 'unsafe-inline'; connect-src 'self'",
                            ),
                        ],
                        html,
                    )
                        .into_response()
                }
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_are_filled_in() {
        let mut config = Config::defaults();
        config.realtime.enabled = true;
        let page = DemoPage::new(&config);
        assert!(PAGE.contains(SETTINGS_MARK));
        assert!(!page.html.contains(SETTINGS_MARK));
        assert!(page.html.contains(r#""realtime":true"#));
        assert!(page.html.contains(r#""namespace":"personal""#));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for outside in ["src=\"http", "href=\"http", "<link", "@import", "cdn"] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
    }
}
