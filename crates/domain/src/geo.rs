//! Points, distances and the demarcation geometry.
//!
//! A deployment may describe the demarcation ("yellow") line, the areas on
//! each side of it and the humanitarian corridors as GeoJSON (RFC 7946). The
//! service then derives a report's zone from its point and records where the
//! reporter's stated zone disagrees, rather than trusting either side's word.

use serde_json::Value;

use crate::report::Zone;

/// A WGS84 coordinate in decimal degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    latitude: f64,
    longitude: f64,
}

impl LatLng {
    /// Checks the latitude's range.
    pub fn latitude(value: f64) -> Result<f64, String> {
        if value.is_finite() && (-90.0..=90.0).contains(&value) {
            Ok(value)
        } else {
            Err("must be between -90 and 90 degrees".to_owned())
        }
    }

    /// Checks the longitude's range.
    pub fn longitude(value: f64) -> Result<f64, String> {
        if value.is_finite() && (-180.0..=180.0).contains(&value) {
            Ok(value)
        } else {
            Err("must be between -180 and 180 degrees".to_owned())
        }
    }

    /// A point, if both coordinates are in range.
    pub fn new(latitude: f64, longitude: f64) -> Result<LatLng, String> {
        Ok(LatLng {
            latitude: Self::latitude(latitude)?,
            longitude: Self::longitude(longitude)?,
        })
    }

    /// Degrees north.
    pub fn lat(&self) -> f64 {
        self.latitude
    }

    /// Degrees east.
    pub fn lon(&self) -> f64 {
        self.longitude
    }

    /// Great-circle distance in metres (haversine, mean Earth radius).
    pub fn distance_m(&self, other: &LatLng) -> f64 {
        const EARTH_RADIUS_M: f64 = 6_371_008.8;
        let (lat1, lat2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.longitude - self.longitude).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

/// A box of WGS84 coordinates, as GeoJSON orders them: west, south, east,
/// north. Boxes crossing the antimeridian are not supported (nothing truce
/// monitors is near it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// The south-west corner.
    pub south_west: LatLng,
    /// The north-east corner.
    pub north_east: LatLng,
}

impl BoundingBox {
    /// A box around one point.
    pub fn around(point: LatLng) -> BoundingBox {
        BoundingBox {
            south_west: point,
            north_east: point,
        }
    }

    /// The box grown to cover `point`.
    pub fn including(self, point: LatLng) -> BoundingBox {
        BoundingBox {
            south_west: LatLng {
                latitude: self.south_west.latitude.min(point.latitude),
                longitude: self.south_west.longitude.min(point.longitude),
            },
            north_east: LatLng {
                latitude: self.north_east.latitude.max(point.latitude),
                longitude: self.north_east.longitude.max(point.longitude),
            },
        }
    }

    /// True when the two boxes share any point.
    pub fn intersects(&self, other: &BoundingBox) -> bool {
        self.south_west.latitude <= other.north_east.latitude
            && other.south_west.latitude <= self.north_east.latitude
            && self.south_west.longitude <= other.north_east.longitude
            && other.south_west.longitude <= self.north_east.longitude
    }
}

/// The configured demarcation geometry.
#[derive(Debug, Clone, Default)]
pub struct Demarcation {
    areas: Vec<(Zone, Polygon)>,
    corridors: Vec<Polygon>,
    line: Vec<Vec<(f64, f64)>>,
    at_line_m: f64,
}

/// A polygon: an outer ring and holes, as (longitude, latitude) pairs.
#[derive(Debug, Clone)]
struct Polygon {
    rings: Vec<Vec<(f64, f64)>>,
}

impl Polygon {
    fn contains(&self, lon: f64, lat: f64) -> bool {
        // Even-odd rule over every ring, so holes subtract.
        let mut inside = false;
        for ring in &self.rings {
            for pair in ring.windows(2) {
                let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
                if (y1 > lat) != (y2 > lat) && lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1 {
                    inside = !inside;
                }
            }
        }
        inside
    }
}

impl Demarcation {
    /// Distance from the line within which a point counts as "at the line",
    /// unless the line feature sets `at_line_meters`.
    pub const DEFAULT_AT_LINE_M: f64 = 150.0;

    /// Reads a GeoJSON FeatureCollection. Features with a `zone` property
    /// (`ISRAELI_CONTROLLED`, `PALESTINIAN_CONTROLLED`,
    /// `HUMANITARIAN_CORRIDOR`) are Polygons or MultiPolygons; the feature
    /// whose `role` is `demarcation_line` is a LineString or
    /// MultiLineString, and may set `at_line_meters`.
    pub fn from_geojson(text: &str) -> Result<Demarcation, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let features = doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or("must be a GeoJSON FeatureCollection")?;
        let mut demarcation = Demarcation {
            at_line_m: Self::DEFAULT_AT_LINE_M,
            ..Demarcation::default()
        };
        for (i, feature) in features.iter().enumerate() {
            let context = |e: String| format!("features[{i}]: {e}");
            let properties = feature.get("properties").cloned().unwrap_or(Value::Null);
            let geometry = feature
                .get("geometry")
                .ok_or_else(|| context("has no geometry".into()))?;
            if properties.get("role").and_then(Value::as_str) == Some("demarcation_line") {
                demarcation.line.extend(lines(geometry).map_err(context)?);
                if let Some(m) = properties.get("at_line_meters").and_then(Value::as_f64) {
                    demarcation.at_line_m = m;
                }
                continue;
            }
            let zone_name = properties
                .get("zone")
                .and_then(Value::as_str)
                .ok_or_else(|| context("needs a \"zone\" property or \"role\": \"demarcation_line\"".into()))?;
            let zone = Zone::from_name(zone_name).ok_or_else(|| context(format!("unknown zone {zone_name:?}")))?;
            for polygon in polygons(geometry).map_err(context)? {
                match zone {
                    Zone::HumanitarianCorridor => demarcation.corridors.push(polygon),
                    Zone::AtLine => {
                        return Err(context("AT_LINE is derived from the line, not drawn".into()));
                    }
                    _ => demarcation.areas.push((zone, polygon)),
                }
            }
        }
        Ok(demarcation)
    }

    /// The zone of `point`: a corridor first, then nearness to the line, then
    /// the side it lies on. `None` outside every configured area.
    pub fn zone_of(&self, point: LatLng) -> Option<Zone> {
        let (lon, lat) = (point.longitude, point.latitude);
        if self.corridors.iter().any(|c| c.contains(lon, lat)) {
            return Some(Zone::HumanitarianCorridor);
        }
        if self.distance_to_line_m(point).is_some_and(|d| d <= self.at_line_m) {
            return Some(Zone::AtLine);
        }
        self.areas
            .iter()
            .find(|(_, area)| area.contains(lon, lat))
            .map(|(zone, _)| *zone)
    }

    /// What was loaded, in a line for the start log: the sides, the
    /// corridors, the line's length, the at-the-line distance, and the
    /// extent, so an operator sees at once whether the right file was read.
    pub fn summary(&self) -> String {
        let sides: Vec<&str> = self.areas.iter().map(|(zone, _)| zone.name()).collect();
        let line_m: f64 = self
            .line
            .iter()
            .flat_map(|line| line.windows(2))
            .map(|seg| {
                let point = |(lon, lat): (f64, f64)| LatLng {
                    latitude: lat,
                    longitude: lon,
                };
                point(seg[0]).distance_m(&point(seg[1]))
            })
            .sum();
        let all = self
            .areas
            .iter()
            .map(|(_, polygon)| polygon)
            .chain(&self.corridors)
            .flat_map(|polygon| polygon.rings.iter().flatten())
            .chain(self.line.iter().flatten());
        let extent = all.fold(None, |extent: Option<(f64, f64, f64, f64)>, &(lon, lat)| {
            Some(match extent {
                None => (lon, lat, lon, lat),
                Some((w, s, e, n)) => (w.min(lon), s.min(lat), e.max(lon), n.max(lat)),
            })
        });
        let extent = match extent {
            Some((w, s, e, n)) => format!("longitude {w}..{e}, latitude {s}..{n}"),
            None => "nothing".to_owned(),
        };
        let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "{} ({}), {}, a line of {:.1} km (at the line within {} m), covering {extent}",
            count(sides.len(), "side polygon"),
            sides.join(", "),
            count(self.corridors.len(), "corridor"),
            line_m / 1000.0,
            self.at_line_m,
        )
    }

    fn distance_to_line_m(&self, point: LatLng) -> Option<f64> {
        // Equirectangular projection around the point: exact enough at the
        // scale of a few kilometres.
        let metres_per_deg_lat = 111_320.0;
        let metres_per_deg_lon = metres_per_deg_lat * point.latitude.to_radians().cos();
        let project = |(lon, lat): (f64, f64)| {
            (
                (lon - point.longitude) * metres_per_deg_lon,
                (lat - point.latitude) * metres_per_deg_lat,
            )
        };
        self.line
            .iter()
            .flat_map(|line| line.windows(2))
            .map(|seg| {
                let (a, b) = (project(seg[0]), project(seg[1]));
                let (dx, dy) = (b.0 - a.0, b.1 - a.1);
                let len2 = dx * dx + dy * dy;
                let t = if len2 == 0.0 {
                    0.0
                } else {
                    (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
                };
                let (x, y) = (a.0 + t * dx, a.1 + t * dy);
                (x * x + y * y).sqrt()
            })
            .reduce(f64::min)
    }
}

fn positions(value: &Value) -> Result<Vec<(f64, f64)>, String> {
    value
        .as_array()
        .ok_or("coordinates must be arrays")?
        .iter()
        .map(|p| match p.as_array().map(Vec::as_slice) {
            Some([lon, lat, ..]) => match (lon.as_f64(), lat.as_f64()) {
                (Some(lon), Some(lat)) => Ok((lon, lat)),
                _ => Err("a position must be [longitude, latitude]".to_owned()),
            },
            _ => Err("a position must be [longitude, latitude]".to_owned()),
        })
        .collect()
}

fn geometry_parts<'a>(geometry: &'a Value, single: &str, multi: &str) -> Result<Vec<&'a Value>, String> {
    let kind = geometry.get("type").and_then(Value::as_str).unwrap_or("");
    let coordinates = geometry.get("coordinates").ok_or("geometry has no coordinates")?;
    if kind == single {
        Ok(vec![coordinates])
    } else if kind == multi {
        Ok(coordinates
            .as_array()
            .ok_or("coordinates must be an array")?
            .iter()
            .collect())
    } else {
        Err(format!("geometry must be a {single} or {multi}, not {kind:?}"))
    }
}

fn polygons(geometry: &Value) -> Result<Vec<Polygon>, String> {
    geometry_parts(geometry, "Polygon", "MultiPolygon")?
        .into_iter()
        .map(|rings| {
            let rings = rings
                .as_array()
                .ok_or("a polygon must be an array of rings")?
                .iter()
                .map(positions)
                .collect::<Result<Vec<_>, _>>()?;
            if rings.first().is_none_or(|outer| outer.len() < 4) {
                return Err("a polygon ring needs at least 4 positions".to_owned());
            }
            Ok(Polygon { rings })
        })
        .collect()
}

fn lines(geometry: &Value) -> Result<Vec<Vec<(f64, f64)>>, String> {
    geometry_parts(geometry, "LineString", "MultiLineString")?
        .into_iter()
        .map(positions)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEOMETRY: &str = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","properties":{"zone":"ISRAELI_CONTROLLED"},
       "geometry":{"type":"Polygon","coordinates":[[[34.0,31.0],[34.5,31.0],[34.5,32.0],[34.0,32.0],[34.0,31.0]]]}},
      {"type":"Feature","properties":{"zone":"PALESTINIAN_CONTROLLED"},
       "geometry":{"type":"Polygon","coordinates":[[[34.5,31.0],[35.0,31.0],[35.0,32.0],[34.5,32.0],[34.5,31.0]]]}},
      {"type":"Feature","properties":{"zone":"HUMANITARIAN_CORRIDOR"},
       "geometry":{"type":"Polygon","coordinates":[[[34.6,31.4],[34.7,31.4],[34.7,31.5],[34.6,31.5],[34.6,31.4]]]}},
      {"type":"Feature","properties":{"role":"demarcation_line","at_line_meters":200},
       "geometry":{"type":"LineString","coordinates":[[34.5,31.0],[34.5,32.0]]}}]}"#;

    #[test]
    fn derives_zones_corridor_first_then_line_then_side() {
        let d = Demarcation::from_geojson(GEOMETRY).unwrap();
        let zone = |lat, lon| d.zone_of(LatLng::new(lat, lon).unwrap());
        assert_eq!(zone(31.5, 34.2), Some(Zone::IsraeliControlled));
        assert_eq!(zone(31.5, 34.8), Some(Zone::PalestinianControlled));
        assert_eq!(zone(31.45, 34.65), Some(Zone::HumanitarianCorridor));
        // 0.001 degrees of longitude is about 95 m here: within 200 m.
        assert_eq!(zone(31.5, 34.501), Some(Zone::AtLine));
        assert_eq!(zone(31.5, 34.51), Some(Zone::PalestinianControlled));
        assert_eq!(zone(40.0, 40.0), None);
    }

    #[test]
    fn rejects_malformed_geometry_with_the_feature_named() {
        let err = Demarcation::from_geojson(
            r#"{"features":[{"properties":{"zone":"NOWHERE"},"geometry":{"type":"Polygon","coordinates":[]}}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("features[0]") && err.contains("NOWHERE"), "{err}");
        assert!(Demarcation::from_geojson("[]").is_err());
    }

    #[test]
    fn the_summary_says_what_was_loaded() {
        let d = Demarcation::from_geojson(GEOMETRY).unwrap();
        assert_eq!(
            d.summary(),
            "2 side polygons (ISRAELI_CONTROLLED, PALESTINIAN_CONTROLLED), 1 corridor, a line of 111.2 km \
             (at the line within 200 m), covering longitude 34..35, latitude 31..32"
        );
    }

    #[test]
    fn the_example_geometry_puts_the_readme_report_where_it_says() {
        let example = include_str!("../../../deploy/demarcation.example.geojson");
        let d = Demarcation::from_geojson(example).unwrap();
        // The README's sample report: Rafah, east of the line.
        assert_eq!(
            d.zone_of(LatLng::new(31.2969, 34.2436).unwrap()),
            Some(Zone::IsraeliControlled)
        );
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // Rafah to Khan Younis, roughly 9 km.
        let rafah = LatLng::new(31.2969, 34.2436).unwrap();
        let khan_younis = LatLng::new(31.3462, 34.3063).unwrap();
        let d = rafah.distance_m(&khan_younis);
        assert!((7_500.0..9_000.0).contains(&d), "{d}");
    }
}
