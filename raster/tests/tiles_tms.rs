#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use quick_xml::events::Event;
use quick_xml::Reader;
use raster::tiles::tms::*;
use raster::Error;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn validation() {
    assert!(TileId::new(0, 0, 0).is_ok());
    assert!(TileId::new(24, (1 << 24) - 1, (1 << 24) - 1).is_ok());
    assert!(matches!(
        TileId::new(25, 0, 0),
        Err(Error::Zoom { z: 25, .. })
    ));
    assert!(matches!(
        TileId::new(u64::MAX, 0, 0),
        Err(Error::Zoom { .. })
    ));
    assert!(matches!(
        TileId::new(0, 1, 0),
        Err(Error::Column { x: 1, n: 1, .. })
    ));
    assert!(matches!(
        TileId::new(3, 0, 8),
        Err(Error::Row { y: 8, n: 8, .. })
    ));
    assert!(matches!(
        TileId::new(24, 1 << 24, 0),
        Err(Error::Column { .. })
    ));
    assert!(TileId::new(5, u64::MAX, 0).is_err());
}

#[test]
fn bounds_z0_z1() {
    let b = TileId::new(0, 0, 0).unwrap().bounds_3857();
    assert_eq!(
        (b.minx, b.miny, b.maxx, b.maxy),
        (-ORIGIN_SHIFT, -ORIGIN_SHIFT, ORIGIN_SHIFT, ORIGIN_SHIFT)
    );
    let ll = TileId::new(0, 0, 0).unwrap().bounds_lonlat();
    assert!(close(ll.minx, -180.0, 1e-9) && close(ll.maxx, 180.0, 1e-9));
    assert!(close(ll.maxy, 85.0511287798066, 1e-9) && close(ll.miny, -85.0511287798066, 1e-9));
    // z1 quadrants: (x, y) → sign of the quadrant.
    for (x, y, sx, sy) in [
        (0, 0, -1.0, 1.0),
        (1, 0, 1.0, 1.0),
        (0, 1, -1.0, -1.0),
        (1, 1, 1.0, -1.0),
    ] {
        let b = TileId::new(1, x, y).unwrap().bounds_3857();
        assert!(close(
            (b.minx + b.maxx) / 2.0,
            sx * ORIGIN_SHIFT / 2.0,
            1e-6
        ));
        assert!(close(
            (b.miny + b.maxy) / 2.0,
            sy * ORIGIN_SHIFT / 2.0,
            1e-6
        ));
        assert!(close(b.maxx - b.minx, ORIGIN_SHIFT, 1e-6));
    }
    assert!(close(resolution(0), 156_543.033_928_041, 1e-6));
    assert!(close(scale_denominator(0), 559_082_264.028_717_8, 1e-4));
}

#[test]
fn paraguay_tile() {
    // Asunción (-57.63, -25.28) lies in 6/21/36; bounds as given by mercantile.bounds(21, 36, 6).
    let r = tiles_for_bbox([-57.63, -25.28, -57.63, -25.28], 6).unwrap();
    assert_eq!(
        r,
        vec![TileRange {
            z: 6,
            min_x: 21,
            max_x: 21,
            min_y: 36,
            max_y: 36
        }]
    );
    let b = TileId::new(6, 21, 36).unwrap().bounds_lonlat();
    assert!(close(b.minx, -61.875, 1e-9));
    assert!(close(b.maxx, -56.25, 1e-9));
    assert!(close(b.maxy, -21.943045533438166, 1e-9));
    assert!(close(b.miny, -27.059125784374054, 1e-9));
    // Paraguay bbox (approx. -62.65, -27.61, -54.26, -19.29) at z6 → 2×2... tiles.
    let r = tiles_for_bbox([-62.65, -27.61, -54.26, -19.29], 6).unwrap();
    assert_eq!(
        r,
        vec![TileRange {
            z: 6,
            min_x: 20,
            max_x: 22,
            min_y: 35,
            max_y: 37
        }]
    );
    assert_eq!(r[0].count(), 9);
}

#[test]
fn bbox_edges_and_antimeridian() {
    // Whole world at z2 = 4×4, edge on boundary does not spill.
    let r = tiles_for_bbox([-180.0, -90.0, 180.0, 90.0], 2).unwrap();
    assert_eq!(
        r[0],
        TileRange {
            z: 2,
            min_x: 0,
            max_x: 3,
            min_y: 0,
            max_y: 3
        }
    );
    let r = tiles_for_bbox([0.0, 0.0, 90.0, 10.0], 2).unwrap();
    assert_eq!(
        (r[0].min_x, r[0].max_x, r[0].min_y, r[0].max_y),
        (2, 2, 1, 1)
    );
    let r = tiles_for_bbox([170.0, -10.0, -170.0, 10.0], 3).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].min_x, r[0].max_x), (7, 7));
    assert_eq!((r[1].min_x, r[1].max_x), (0, 0));
    assert!(tiles_for_bbox([0.0, 10.0, 1.0, 0.0], 3).is_err());
    assert!(tiles_for_bbox([f64::NAN, 0.0, 1.0, 1.0], 3).is_err());
    assert!(tiles_for_bbox([0.0, 0.0, 1.0, 1.0], 25).is_err());
}

#[test]
fn zooms() {
    assert_eq!(zoom_for_resolution(resolution(10)).unwrap(), 10);
    assert_eq!(zoom_for_resolution(1222.99).unwrap(), 7);
    assert_eq!(zoom_for_resolution(1000.0).unwrap(), 7); // 2^7.29 → nearest 7
    assert!(zoom_for_resolution(0.0).is_err());
    // 2816 px at z7 resolution → one tile at about z3.
    assert_eq!(zoom_range(resolution(7), 2816, 768).unwrap(), (3, 7));
}

#[test]
fn tilejson_doc() {
    let d = tilejson(&TileJsonParams {
        tiles_url: "http://h/t/{z}/{x}/{y}.png?a=1".into(),
        bounds: [134.86, -13.81, 161.57, -8.27],
        minzoom: 3,
        maxzoom: 7,
        name: Some("ch1".into()),
        attribution: None,
    })
    .unwrap();
    assert_eq!(d["tilejson"], "3.0.0");
    assert_eq!(d["tiles"][0], "http://h/t/{z}/{x}/{y}.png?a=1");
    assert_eq!(d["minzoom"], 3);
    assert_eq!(d["maxzoom"], 7);
    assert_eq!(d["bounds"][2], 161.57);
    assert!(close(d["center"][0].as_f64().unwrap(), 148.215, 1e-9));
    assert_eq!(d["center"][2], 3);
    let bad = TileJsonParams {
        tiles_url: "http://h/{z}/{x}.png".into(),
        bounds: [0.0; 4],
        minzoom: 0,
        maxzoom: 1,
        name: None,
        attribution: None,
    };
    assert!(tilejson(&bad).is_err());
}

/// Minimal DOM: (path, text) of every element and attributes of elements, via quick-xml.
type Texts = Vec<(String, String)>;
type Attrs = Vec<(String, Vec<(String, String)>)>;
fn parse(xml: &str) -> (Texts, Attrs) {
    let mut r = Reader::from_str(xml);
    let mut stack: Vec<String> = vec![];
    let mut texts = vec![];
    let mut attrs = vec![];
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let a: Vec<(String, String)> = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().unwrap().into_owned(),
                        )
                    })
                    .collect();
                stack.push(name.clone());
                attrs.push((stack.join("/"), a));
                // Empty elements close immediately.
                if xml.as_bytes()[r.buffer_position() as usize - 2] == b'/' {
                    stack.pop();
                }
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                let s = t.unescape().unwrap().trim().to_string();
                if !s.is_empty() {
                    texts.push((stack.join("/"), s));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unbalanced XML");
    (texts, attrs)
}

#[test]
fn wmts_doc() {
    let svc = WmtsService {
        title: "Downlink <archive> & co".into(),
        capabilities_url: "http://h/wmts/WMTSCapabilities.xml?x=1&y=2".into(),
        tile_base_url: "http://h/wmts".into(),
    };
    let layers = vec![WmtsLayer {
        identifier: "meteor-m2/ch1".into(),
        title: "Meteor \"ch1\"".into(),
        abstract_text: Some("MSU-MR channel 1".into()),
        bounds: [134.86, -13.81, 161.57, -8.27],
        minzoom: 3,
        maxzoom: 7,
        format: "image/png".into(),
        url_template: "http://h/wmts/ch1/{Time}/{TileMatrix}/{TileCol}/{TileRow}.png?a=1&b=2"
            .into(),
        times: vec![
            "2022-12-20T00:12:00Z".into(),
            "2022-12-21T11:00:00Z".into(),
            "2022-12-19T23:00:00Z".into(),
        ],
    }];
    let xml = wmts_capabilities(&svc, &layers).unwrap();
    let (texts, attrs) = parse(&xml);
    let get = |p: &str| {
        texts
            .iter()
            .filter(|(k, _)| k == p)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("Capabilities/ows:ServiceIdentification/ows:Title"),
        vec!["Downlink <archive> & co"]
    );
    assert_eq!(
        get("Capabilities/ows:ServiceIdentification/ows:ServiceType"),
        vec!["OGC WMTS"]
    );
    assert_eq!(
        get("Capabilities/Contents/Layer/ows:Identifier"),
        vec!["meteor-m2/ch1"]
    );
    assert_eq!(
        get("Capabilities/Contents/Layer/ows:Title"),
        vec!["Meteor \"ch1\""]
    );
    assert_eq!(get("Capabilities/Contents/Layer/Format"), vec!["image/png"]);
    assert_eq!(
        get("Capabilities/Contents/Layer/Dimension/ows:Identifier"),
        vec!["Time"]
    );
    assert_eq!(
        get("Capabilities/Contents/Layer/Dimension/Default"),
        vec!["2022-12-21T11:00:00Z"]
    );
    assert_eq!(get("Capabilities/Contents/Layer/Dimension/Value").len(), 3);
    assert_eq!(
        get("Capabilities/Contents/Layer/TileMatrixSetLink/TileMatrixSet"),
        vec!["WebMercatorQuad"]
    );
    assert_eq!(get("Capabilities/Contents/Layer/TileMatrixSetLink/TileMatrixSetLimits/TileMatrixLimits/TileMatrix").len(), 5);
    assert_eq!(
        get("Capabilities/Contents/Layer/ows:WGS84BoundingBox/ows:LowerCorner"),
        vec!["134.86 -13.81"]
    );
    assert_eq!(
        get("Capabilities/Contents/TileMatrixSet/ows:SupportedCRS"),
        vec!["urn:ogc:def:crs:EPSG::3857"]
    );
    let ids = get("Capabilities/Contents/TileMatrixSet/TileMatrix/ows:Identifier");
    assert_eq!(ids, (0..=7).map(|z| z.to_string()).collect::<Vec<_>>());
    let sd: f64 = get("Capabilities/Contents/TileMatrixSet/TileMatrix/ScaleDenominator")[0]
        .parse()
        .unwrap();
    assert!(close(sd, 559_082_264.028_717_8, 1e-3));
    assert_eq!(
        get("Capabilities/Contents/TileMatrixSet/TileMatrix/MatrixWidth")[7],
        "128"
    );
    let res = attrs
        .iter()
        .find(|(k, _)| k == "Capabilities/Contents/Layer/ResourceURL")
        .unwrap();
    assert!(res.1.contains(&(
        "template".into(),
        "http://h/wmts/ch1/{Time}/{TileMatrix}/{TileCol}/{TileRow}.png?a=1&b=2".into()
    )));
    assert!(res.1.contains(&("resourceType".into(), "tile".into())));
    let root = attrs.iter().find(|(k, _)| k == "Capabilities").unwrap();
    assert!(root.1.contains(&("version".into(), "1.0.0".into())));
    assert!(root
        .1
        .contains(&("xmlns".into(), "http://www.opengis.net/wmts/1.0".into())));
    let smu = attrs
        .iter()
        .find(|(k, _)| k == "Capabilities/ServiceMetadataURL")
        .unwrap();
    assert_eq!(smu.1[0].1, "http://h/wmts/WMTSCapabilities.xml?x=1&y=2");
    // Layer children order required by the schema.
    let order: Vec<&str> = attrs
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("Capabilities/Contents/Layer/"))
        .filter(|k| !k.contains('/'))
        .collect();
    assert_eq!(
        order,
        [
            "ows:Title",
            "ows:Abstract",
            "ows:WGS84BoundingBox",
            "ows:Identifier",
            "Style",
            "Format",
            "Dimension",
            "TileMatrixSetLink",
            "ResourceURL"
        ]
    );
    // Layers with times must carry {Time}.
    let mut l2 = layers.clone();
    l2[0].url_template = "http://h/{TileMatrix}/{TileCol}/{TileRow}.png".into();
    assert!(wmts_capabilities(&svc, &l2).is_err());
}

#[test]
fn escape() {
    assert_eq!(xml_escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;");
}
