//! A minimal browser for the page flows: keeps the session cookie, does not follow redirects,
//! and reads the hidden fields of forms.
use reqwest::StatusCode;

#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
    /// An `X-Forwarded-For` sent with every request (a reverse proxy's, or a forged one).
    forwarded_for: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// `name=value` of every `<input type="hidden">`, in order.
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find(r#"<input type="hidden" name=""#) {
            rest = &rest[start + r#"<input type="hidden" name=""#.len()..];
            let Some((name, after)) = rest.split_once(r#"" value=""#) else { break };
            let Some((value, after)) = after.split_once('"') else { break };
            fields.push((unescape(name), unescape(value)));
            rest = after;
        }
        fields
    }

    pub fn field(&self, name: &str) -> String {
        self.hidden_fields().into_iter().find(|(n, _)| n == name).map(|(_, v)| v).unwrap_or_default()
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

impl Browser {
    pub fn new() -> Browser {
        Browser::from_address(std::net::Ipv4Addr::LOCALHOST)
    }

    /// A browser whose connections come from `address` (any of 127.0.0.0/8 on loopback): a
    /// person at another machine, as the server sees it.
    pub fn from_address(address: std::net::Ipv4Addr) -> Browser {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::V4(address))
            .build()
            .unwrap();
        Browser { http, cookie: None, forwarded_for: None }
    }

    /// The same browser, sending `X-Forwarded-For: value` with every request.
    pub fn forwarded_for(self, value: &str) -> Browser {
        Browser { forwarded_for: Some(value.to_owned()), ..self }
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        if let Some(set) = response.headers().get("set-cookie") {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let status = response.status();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let content_type =
            response.headers().get("content-type").map(|c| c.to_str().unwrap().to_owned()).unwrap_or_default();
        let headers = response.headers().clone();
        Page { status, location, body: response.text().await.unwrap(), content_type, headers }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let mut request = self.http.get(url);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(forwarded) = &self.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        let response = request.send().await.unwrap();
        self.finish(response).await
    }

    pub async fn post(&mut self, url: &str, form: &[(String, String)]) -> Page {
        let mut request = self.http.post(url).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(forwarded) = &self.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        let response = request.send().await.unwrap();
        self.finish(response).await
    }
}
