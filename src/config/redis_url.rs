//! `redis://[user:password@]host:port[/db]` URLs (and `rediss://` for TLS) for
//! the passthrough backend and the lock masters; and Sentinel-managed masters,
//! `redis-sentinel://[user:password@]host:port[,host:port...][/db]#master_name`
//! (Lettuce's form; `rediss-sentinel://` for TLS to the master).

use std::fmt;

/// A parsed Redis server URL. `Display` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number (default 0).
    pub db: u32,
    /// `rediss://`: the connection uses TLS.
    pub tls: bool,
    /// `redis-sentinel://`: the master is found through these sentinels
    /// (`host` and `port` are then the first sentinel's).
    pub sentinel: Option<Sentinels>,
}

/// The sentinels that know where a master is, and its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinels {
    /// The sentinels, `(host, port)` (port 26379 when not given).
    pub nodes: Vec<(String, u16)>,
    /// The master's name in the sentinels' configuration.
    pub master: String,
}

/// What every Sentinel URL error ends with.
const SENTINEL_FORM: &str =
    "expected redis-sentinel://[user:password@]host:port[,host:port...][/db]#master_name";

impl RedisUrl {
    /// Parses a URL; the error says what is wrong with it, in one line.
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        if let Some(rest) = s.strip_prefix("redis-sentinel://") {
            return RedisUrl::parse_sentinel(rest, false);
        }
        if let Some(rest) = s.strip_prefix("rediss-sentinel://") {
            return RedisUrl::parse_sentinel(rest, true);
        }
        let url = url::Url::parse(s).map_err(|e| {
            format!("not a URL ({e}): expected redis://[user:password@]host:port[/db]")
        })?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(format!(
                    "unsupported scheme {other:?}: expected redis:// or rediss://[user:password@]host:port[/db]"
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => {
                return Err("missing host: expected redis://[user:password@]host:port[/db]".into());
            }
        };
        if host.is_empty() {
            return Err("missing host: expected redis://[user:password@]host:port[/db]".into());
        }
        let port = url.port().unwrap_or(6379);
        if port == 0 {
            return Err("port 0 is not a server port".into());
        }
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| "invalid percent-encoding in the credentials".to_string())
        };
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            p => p
                .parse::<u32>()
                .map_err(|_| format!("invalid database {p:?} in the path: expected /<number>"))?,
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "URL parameters are not supported: expected redis://[user:password@]host:port[/db]"
                    .into(),
            );
        }
        Ok(RedisUrl {
            host,
            port,
            username,
            password,
            db,
            tls,
            sentinel: None,
        })
    }

    /// The part of a Sentinel URL after its scheme.
    fn parse_sentinel(rest: &str, tls: bool) -> Result<RedisUrl, String> {
        let (before, name) = rest
            .split_once('#')
            .ok_or_else(|| format!("missing #master_name: {SENTINEL_FORM}"))?;
        let master = percent_decode(name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("missing #master_name: {SENTINEL_FORM}"))?;
        if before.contains('?') {
            return Err(format!("URL parameters are not supported: {SENTINEL_FORM}"));
        }
        let (authority, path) = before.split_once('/').unwrap_or((before, ""));
        let db = match path {
            "" => 0,
            p => p
                .parse::<u32>()
                .map_err(|_| format!("invalid database {p:?} in the path: expected /<number>"))?,
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| "invalid percent-encoding in the credentials".to_string())
        };
        let (username, password) = match userinfo.map(|u| u.split_once(':')) {
            None => (None, None),
            Some(None) => (Some(decode(userinfo.unwrap_or_default())?), None),
            Some(Some((u, p))) => (
                (!u.is_empty()).then(|| decode(u)).transpose()?,
                Some(decode(p)?),
            ),
        };
        let mut nodes = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') || host.starts_with('[') => {
                    let port = port
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p != 0)
                        .ok_or_else(|| {
                            format!("invalid sentinel port in {h:?}: {SENTINEL_FORM}")
                        })?;
                    (host, port)
                }
                _ => (h, 26379),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(format!("missing sentinel host: {SENTINEL_FORM}"));
            }
            nodes.push((host.to_string(), port));
        }
        let (host, port) = nodes[0].clone();
        Ok(RedisUrl {
            host,
            port,
            username,
            password,
            db,
            tls,
            sentinel: Some(Sentinels { nodes, master }),
        })
    }

    /// `host:port`, bracketing IPv6 addresses, for connecting.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "rediss" } else { "redis" }
    }

    /// The URL with its password, for client libraries.
    pub fn to_url_string(&self) -> String {
        let base = format!("{}://{}/{}", self.scheme(), self.addr(), self.db);
        let mut u = match url::Url::parse(&base) {
            Ok(u) => u,
            Err(_) => return base,
        };
        if let Some(user) = &self.username {
            let _ = u.set_username(user);
        }
        if let Some(pass) = &self.password {
            let _ = u.set_password(Some(pass));
        }
        u.to_string()
    }

    /// The `AUTH` command arguments for this URL's credentials, if any.
    pub fn auth_args(&self) -> Option<Vec<&[u8]>> {
        let password = self.password.as_deref()?;
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &self.username {
            args.push(user.as_bytes());
        }
        args.push(password.as_bytes());
        Some(args)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sentinel {
            Some(_) => write!(f, "{}-sentinel://", self.scheme())?,
            None => write!(f, "{}://", self.scheme())?,
        }
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, None) => {}
        }
        match &self.sentinel {
            Some(s) => {
                let hosts: Vec<String> = s
                    .nodes
                    .iter()
                    .map(|(h, p)| match h.contains(':') {
                        true => format!("[{h}]:{p}"),
                        false => format!("{h}:{p}"),
                    })
                    .collect();
                write!(f, "{}", hosts.join(","))?;
            }
            None => write!(f, "{}", self.addr())?,
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        if let Some(s) = &self.sentinel {
            write!(f, "#{}", s.master)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_urls() {
        let u = RedisUrl::parse("redis://alice:p%40ss@10.0.0.1:6380/3").unwrap();
        assert_eq!(u.host, "10.0.0.1");
        assert_eq!(u.port, 6380);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.db, 3);
        assert_eq!(u.to_string(), "redis://alice:***@10.0.0.1:6380/3");
        let u = RedisUrl::parse("redis://:secret@localhost").unwrap();
        assert_eq!(
            (u.port, u.username.clone(), u.password.as_deref()),
            (6379, None, Some("secret"))
        );
        assert_eq!(u.auth_args().unwrap(), vec![&b"AUTH"[..], b"secret"]);
        let u = RedisUrl::parse("redis://[::1]:7000").unwrap();
        assert_eq!(u.addr(), "[::1]:7000");
        let u = RedisUrl::parse("rediss://cache.example:6380").unwrap();
        assert!(u.tls);
        assert_eq!(u.to_string(), "rediss://cache.example:6380");
        assert!(!RedisUrl::parse("redis://h:1").unwrap().tls);
    }

    #[test]
    fn parses_sentinel_urls() {
        let u =
            RedisUrl::parse("redis-sentinel://:pw@10.0.0.1:26380,s2,[::1]:26381/2#cache").unwrap();
        let s = u.sentinel.clone().unwrap();
        assert_eq!(s.master, "cache");
        assert_eq!(
            s.nodes,
            [
                ("10.0.0.1".to_string(), 26380),
                ("s2".to_string(), 26379),
                ("::1".to_string(), 26381)
            ]
        );
        assert_eq!((u.db, u.password.as_deref(), u.tls), (2, Some("pw"), false));
        assert_eq!(
            u.to_string(),
            "redis-sentinel://:***@10.0.0.1:26380,s2:26379,[::1]:26381/2#cache"
        );
        let u = RedisUrl::parse("rediss-sentinel://app:pw@s1#m").unwrap();
        assert!(u.tls && u.username.as_deref() == Some("app"));
        for bad in [
            "redis-sentinel://s1:26379",
            "redis-sentinel://s1:26379#",
            "redis-sentinel://s1:0#m",
            "redis-sentinel://s1:x#m",
            "redis-sentinel://#m",
            "redis-sentinel://s1/abc#m",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "localhost:6379",
            "http://x:1",
            "redis://x:1/abc",
            "redis://x:1/?timeout=3",
            "redis://:0",
        ] {
            assert!(RedisUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
