use super::*;

const ZONE: &str = "$TTL 300\n@ IN SOA ns1.internal. hostmaster.internal. ( 7 3600 600 86400 5 )\n  IN NS ns1.internal.\nns1 IN A 127.0.0.1\ndb IN A 10.0.0.9\n";
const BASE: &str = r#"[dns]
listen = ["127.0.0.1:5353"]

[[zone]]
origin = "internal."
file = "internal.zone"

[state]
dir = "state"

[[service]]
name = "web-v1"
endpoints = ["10.0.0.1:8080"]

[[alias]]
name = "web"
targets = ["web-v1"]
"#;

#[test]
fn probe() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("internal.zone"), ZONE).unwrap();
    std::fs::write(
        dir.path().join("bad.zone"),
        ZONE.replace("10.0.0.9", "10.0.0.999"),
    )
    .unwrap();
    let path = dir.path().join("aliasd.toml");
    let cases = [
        format!("foo = 1\n{BASE}"),
        BASE.replace("[dns]\n", "[dns]\nbogus = 1\n"),
        format!("{BASE}bogus = 2\n"),
        BASE.replace("[[service]]\n", "[[service]]\nbogus = 3\n"),
        BASE.replace("listen = [", "listen = [[["),
        BASE.replace(
            "[[zone]]\norigin = \"internal.\"\nfile = \"internal.zone\"\n",
            "",
        ),
        BASE.replace("[dns]\n", "[dns]\nalias_ttl = 1.5\n"),
        BASE.replace("[dns]\n", "[dns]\nalias_ttl = \"1500ms\"\n"),
        BASE.replace("[dns]\n", "[dns]\nalias_ttl = \"five\"\n"),
        BASE.replace("[dns]\n", "[dns]\nalias_ttl = \"1.5s\"\n"),
        BASE.replace("[dns]\n", "[dns]\nudp_sockets = -1\n"),
        BASE.replace("internal.zone", "bad.zone"),
        BASE.replace("internal.zone", "missing.zone"),
        format!(
            "{BASE}\n[[api.token]]\nname = \"x\"\nsecret = \"0123456789abcdef\"\n[[alias]]\nname = \"y\"\ntargets = [\"web-v1\"]\n[[api.token]]\nname = \"z\"\nsecret = \"0123456789abcdefg\"\n"
        ),
    ];
    for text in &cases {
        match Config::parse(text, &path, &|_| None) {
            Ok(c) => eprintln!("OK {:?}", c.api),
            Err(e) => eprintln!("ERR {e}"),
        }
    }
    panic!();
}
