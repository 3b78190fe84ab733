//! `GET /api/explain?request=GET%20https://shop.example/api/x&header=Cookie:%20a=b&from=10.1.2.3`:
//! what the running instance would do with that request, its servers' state as it is now
//! (see [`crate::proxy::explain`]). Parameters: `request` (`METHOD URL` or `URL`), `header`
//! (repeatable, `Name: value`), `from` (the socket's peer), `proxy_source` (what a PROXY
//! header announced), `status` and `response_header` (repeatable: the response to judge for
//! the cache), `format=text` for the command's text instead of JSON.

use super::{error, reply, Resp, Shared};
use http::StatusCode;

/// The explanation as JSON (or text), or 400 naming the bad parameter.
pub(super) fn explain(shared: &Shared, query: Option<&str>) -> Resp {
    let (mut request, mut from, mut proxy, mut status, mut text) = (None, None, None, None, false);
    let (mut headers, mut response_headers) = (Vec::new(), Vec::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = v.into_owned();
        match &*k {
            "request" if request.is_some() => {
                return error(StatusCode::BAD_REQUEST, "`request` given twice")
            }
            "request" => request = Some(v),
            "header" => headers.push(v),
            "from" => from = Some(v),
            "proxy_source" => proxy = Some(v),
            "status" => status = Some(v),
            "response_header" => response_headers.push(v),
            "format" => match &*v {
                "text" => text = true,
                "json" => text = false,
                _ => return error(StatusCode::BAD_REQUEST, "`format` is json or text"),
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter `{other}`"),
                )
            }
        }
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "give `request`, e.g. request=GET%20http://example.com/",
        );
    };
    let ask = crate::proxy::explain::ask_from(
        &request,
        &headers,
        from.as_deref(),
        proxy.as_deref(),
        status.as_deref(),
        &response_headers,
    );
    let ask = match ask {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let rt = shared.live().runtime.load();
    let out = crate::proxy::explain::explain(&rt, &ask);
    match text {
        true => reply(StatusCode::OK, "text/plain; charset=utf-8", out.to_string()),
        false => super::json(
            StatusCode::OK,
            &serde_json::to_value(&out).unwrap_or_default(),
        ),
    }
}
