//! The DERP map clients and agents are given (Tailscale's `tailcfg.DERPMap`,
//! as coderd builds it in `tailnet.NewDERPMap`): the embedded relay's region,
//! the operator's own relays from `derp.map_file`, STUN nodes only when
//! configured and direct connections are allowed.
//!
//! The embedded region has `EmbeddedRelay: true`: Coder's clients and agents
//! rewrite its node's host, port and scheme from the access URL they used, so
//! the map works from every address the server is reached at. Its node is
//! still filled from `access_url` for clients that do not rewrite.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::DerpConfig;
use crate::rpc::proto::tailnet::DerpMap;
use crate::rpc::proto::tailnet::derp_map::{HomeParams, Region, region::Node};

/// Builds the map: the embedded region (when `derp.embedded_relay`), the
/// regions of `extra` (parsed from `derp.map_file`), STUN nodes from
/// `derp.stun_addresses`; with `disable_direct_connections`, no STUN at all
/// (STUN-only nodes dropped, `STUNPort` -1 everywhere), as coderd does.
pub fn build(
    config: &DerpConfig,
    access_url: &str,
    extra: Option<DerpMap>,
) -> Result<DerpMap, String> {
    let mut map = extra.unwrap_or_default();
    if config.embedded_relay {
        let id = i64::from(config.region_id);
        if map.regions.contains_key(&id) {
            return Err(format!(
                "derp.map_file has region {id}, which is derp.region_id (the embedded relay's): change one of them"
            ));
        }
        let mut region = Region {
            region_id: id,
            embedded_relay: true,
            region_code: config.region_code.clone(),
            region_name: config.region_name.clone(),
            avoid: false,
            nodes: vec![embedded_node(id, access_url)?],
        };
        for (i, address) in config.stun_addresses.iter().enumerate() {
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<i32>().ok()?)))
                .ok_or_else(|| format!("derp.stun_addresses: {address:?} is not host:port"))?;
            region.nodes.push(Node {
                name: format!("{id}stun{i}"),
                region_id: id,
                host_name: host.trim_matches(['[', ']']).to_owned(),
                stun_only: true,
                stun_port: port,
                ..Node::default()
            });
        }
        map.regions.insert(id, region);
    }
    if map.regions.is_empty() {
        return Err(
            "the DERP map has no region: keep derp.embedded_relay = true or give derp.map_file"
                .to_owned(),
        );
    }
    // Coder's DERPMapFromProto reads HomeParams without a nil check: a
    // protobuf map without it panics Coder's agent and clients, so this map
    // (the protobuf one) always has it; the JSON map omits an empty one.
    map.home_params.get_or_insert_with(HomeParams::default);
    if config.disable_direct_connections {
        for region in map.regions.values_mut() {
            region.nodes.retain(|n| !n.stun_only);
            for node in &mut region.nodes {
                node.stun_port = -1;
            }
        }
    }
    Ok(map)
}

/// The embedded relay's node: named `<region>b`, reached at the access URL's
/// host and port (80/443 by scheme), plain HTTP when the URL is `http`, no STUN.
fn embedded_node(region_id: i64, access_url: &str) -> Result<Node, String> {
    let (scheme, rest) = access_url
        .split_once("://")
        .ok_or_else(|| format!("access_url {access_url:?} has no scheme"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            match port.parse::<i32>() {
                Ok(p) if !host.is_empty() => (host, Some(p)),
                _ => (authority, None),
            }
        }
        _ => (authority, None),
    };
    let port = port.unwrap_or(if scheme == "http" { 80 } else { 443 });
    Ok(Node {
        name: format!("{region_id}b"),
        region_id,
        host_name: host.trim_matches(['[', ']']).to_owned(),
        stun_port: -1,
        derp_port: port,
        force_http: scheme == "http",
        ..Node::default()
    })
}

/// The map the configuration describes: `derp.map_file` read with `read`
/// (the caller's I/O) and parsed, then [`build`]. Errors name the key.
pub fn from_config(
    config: &crate::config::Config,
    read: impl FnOnce(&std::path::Path) -> std::io::Result<String>,
) -> Result<DerpMap, String> {
    let extra = match &config.derp.map_file {
        Some(path) => {
            let text = read(path).map_err(|e| format!("derp.map_file {}: {e}", path.display()))?;
            Some(
                parse_map_json(&text)
                    .map_err(|e| format!("derp.map_file {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    build(&config.derp, &config.access_url, extra)
}

/// `tailcfg.DERPMap` as JSON (Go field names), as `derp.map_file` holds it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapJson {
    #[serde(rename = "HomeParams", default)]
    home_params: Option<HomeParamsJson>,
    #[serde(rename = "Regions", default)]
    regions: BTreeMap<String, Option<RegionJson>>,
    #[serde(rename = "OmitDefaultRegions", alias = "omitDefaultRegions", default)]
    _omit_default_regions: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HomeParamsJson {
    #[serde(rename = "RegionScore", default)]
    region_score: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionJson {
    #[serde(rename = "EmbeddedRelay", default)]
    embedded_relay: bool,
    #[serde(rename = "RegionID")]
    region_id: i64,
    #[serde(rename = "RegionCode", default)]
    region_code: String,
    #[serde(rename = "RegionName", default)]
    region_name: String,
    #[serde(rename = "Avoid", default)]
    avoid: bool,
    #[serde(rename = "Nodes", default)]
    nodes: Vec<NodeJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeJson {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "RegionID")]
    region_id: i64,
    #[serde(rename = "HostName")]
    host_name: String,
    #[serde(rename = "CertName", default)]
    cert_name: String,
    #[serde(rename = "IPv4", default)]
    ipv4: String,
    #[serde(rename = "IPv6", default)]
    ipv6: String,
    #[serde(rename = "STUNPort", default)]
    stun_port: i32,
    #[serde(rename = "STUNOnly", default)]
    stun_only: bool,
    #[serde(rename = "DERPPort", default)]
    derp_port: i32,
    #[serde(rename = "InsecureForTests", default)]
    insecure_for_tests: bool,
    #[serde(rename = "ForceHTTP", default)]
    force_http: bool,
    #[serde(rename = "STUNTestIP", default)]
    stun_test_ip: String,
    #[serde(rename = "CanPort80", default)]
    can_port_80: bool,
}

/// Parses a `derp.map_file` (JSON, Go field names). Regions are keyed by
/// their id; a key that disagrees with the region's `RegionID`, a node of
/// another region, or a region without nodes is refused.
pub fn parse_map_json(text: &str) -> Result<DerpMap, String> {
    let json: MapJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut map = DerpMap::default();
    if let Some(home) = json.home_params {
        let mut region_score = BTreeMap::new();
        for (k, v) in home.region_score {
            let id = k
                .parse::<i64>()
                .map_err(|_| format!("HomeParams.RegionScore: {k:?} is not a region id"))?;
            region_score.insert(id, v);
        }
        map.home_params = Some(HomeParams { region_score });
    }
    for (key, region) in json.regions {
        let Some(r) = region else { continue };
        if key.parse::<i64>().ok() != Some(r.region_id) {
            return Err(format!(
                "Regions[{key:?}] has RegionID {}: the key must be the region id",
                r.region_id
            ));
        }
        if r.nodes.is_empty() {
            return Err(format!("region {} has no Nodes", r.region_id));
        }
        let mut nodes = Vec::with_capacity(r.nodes.len());
        for n in r.nodes {
            if n.region_id != r.region_id {
                return Err(format!(
                    "node {:?} has RegionID {} inside region {}",
                    n.name, n.region_id, r.region_id
                ));
            }
            nodes.push(Node {
                name: n.name,
                region_id: n.region_id,
                host_name: n.host_name,
                cert_name: n.cert_name,
                ipv4: n.ipv4,
                ipv6: n.ipv6,
                stun_port: n.stun_port,
                stun_only: n.stun_only,
                derp_port: n.derp_port,
                insecure_for_tests: n.insecure_for_tests,
                force_http: n.force_http,
                stun_test_ip: n.stun_test_ip,
                can_port_80: n.can_port_80,
            });
        }
        map.regions.insert(
            r.region_id,
            Region {
                region_id: r.region_id,
                embedded_relay: r.embedded_relay,
                region_code: r.region_code,
                region_name: r.region_name,
                avoid: r.avoid,
                nodes,
            },
        );
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn derp(f: impl FnOnce(&mut DerpConfig)) -> DerpConfig {
        let mut c = Config::default().derp;
        f(&mut c);
        c
    }

    #[test]
    fn the_default_map_is_the_embedded_region_without_stun() {
        let map = build(&derp(|_| {}), "http://10.0.0.5:3000", None).unwrap();
        assert_eq!(map.regions.len(), 1);
        assert_eq!(
            map.home_params,
            Some(HomeParams::default()),
            "Coder dereferences it"
        );
        let r = &map.regions[&999];
        assert!(r.embedded_relay);
        assert_eq!(r.region_code, "coder");
        assert_eq!(r.region_name, "Coder Embedded Relay");
        assert_eq!(r.nodes.len(), 1);
        let n = &r.nodes[0];
        assert_eq!(n.name, "999b");
        assert_eq!(n.host_name, "10.0.0.5");
        assert_eq!(n.derp_port, 3000);
        assert_eq!(n.stun_port, -1);
        assert!(n.force_http);
    }

    #[test]
    fn https_without_a_port_is_443_and_ipv6_hosts_lose_their_brackets() {
        let map = build(&derp(|_| {}), "https://coder.home.lan", None).unwrap();
        let n = &map.regions[&999].nodes[0];
        assert_eq!(
            (n.host_name.as_str(), n.derp_port, n.force_http),
            ("coder.home.lan", 443, false)
        );
        let map = build(&derp(|_| {}), "http://[fd00::1]:8080", None).unwrap();
        let n = &map.regions[&999].nodes[0];
        assert_eq!((n.host_name.as_str(), n.derp_port), ("fd00::1", 8080));
        let map = build(&derp(|_| {}), "http://[fd00::1]", None).unwrap();
        let n = &map.regions[&999].nodes[0];
        assert_eq!((n.host_name.as_str(), n.derp_port), ("fd00::1", 80));
    }

    #[test]
    fn stun_nodes_only_while_direct_connections_are_allowed() {
        let c = derp(|c| c.stun_addresses = vec!["stun.lan:3478".into()]);
        let map = build(&c, "http://h:1", None).unwrap();
        let nodes = &map.regions[&999].nodes;
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].name, "999stun0");
        assert!(nodes[1].stun_only);
        assert_eq!(
            (nodes[1].host_name.as_str(), nodes[1].stun_port),
            ("stun.lan", 3478)
        );

        let c = derp(|c| {
            c.stun_addresses = vec!["stun.lan:3478".into()];
            c.disable_direct_connections = true;
        });
        let map = build(&c, "http://h:1", None).unwrap();
        let nodes = &map.regions[&999].nodes;
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].stun_port, -1);
    }

    const OWN: &str = r#"{"Regions": {"1": {"RegionID": 1, "RegionCode": "home", "RegionName": "Home relay",
        "Nodes": [{"Name": "1a", "RegionID": 1, "HostName": "derp.home.lan", "STUNPort": 3478, "DERPPort": 443}]}}}"#;

    #[test]
    fn the_operators_relays_are_merged_beside_the_embedded_region() {
        let extra = parse_map_json(OWN).unwrap();
        let map = build(&derp(|_| {}), "http://h:1", Some(extra.clone())).unwrap();
        assert_eq!(
            map.regions.keys().copied().collect::<Vec<_>>(),
            vec![1, 999]
        );
        assert_eq!(map.regions[&1].nodes[0].host_name, "derp.home.lan");
        assert_eq!(map.regions[&1].nodes[0].stun_port, 3478);

        let map = build(
            &derp(|c| c.disable_direct_connections = true),
            "http://h:1",
            Some(extra.clone()),
        )
        .unwrap();
        assert_eq!(map.regions[&1].nodes[0].stun_port, -1, "no STUN anywhere");

        let map = build(
            &derp(|c| c.embedded_relay = false),
            "http://h:1",
            Some(extra),
        )
        .unwrap();
        assert_eq!(map.regions.keys().copied().collect::<Vec<_>>(), vec![1]);
        let err = build(&derp(|c| c.embedded_relay = false), "http://h:1", None).unwrap_err();
        assert!(err.contains("no region"), "{err}");
    }

    #[test]
    fn bad_map_files_are_refused_with_a_reason() {
        let clash = OWN
            .replace("\"1\"", "\"999\"")
            .replace("\"RegionID\": 1", "\"RegionID\": 999");
        let err = build(
            &derp(|_| {}),
            "http://h:1",
            Some(parse_map_json(&clash).unwrap()),
        )
        .unwrap_err();
        assert!(err.contains("region 999"), "{err}");
        assert!(
            parse_map_json(&OWN.replace("\"1\":", "\"2\":"))
                .unwrap_err()
                .contains("key must be")
        );
        assert!(
            parse_map_json(r#"{"Regions": {"1": {"RegionID": 1, "Nodes": []}}}"#)
                .unwrap_err()
                .contains("no Nodes")
        );
        assert!(
            parse_map_json(r#"{"regions": {}}"#).is_err(),
            "Go field names only"
        );
        assert!(parse_map_json("[").is_err());
    }
}
