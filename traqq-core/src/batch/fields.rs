//! The fields, members and values of one key of a batch: many short texts, written back to
//! back into one buffer per key rather than allocated one by one.
//!
//! A batch of 10,000 events holds tens of thousands of distinct fields, each written once and
//! freed with the batch. As `String`s, each cost an allocation and a free, most of the
//! ingest's allocator time; here a key's texts share one growing buffer and the table holds
//! where each lies.

use std::fmt;
use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Where one text lies in its map's buffer, and its value.
#[derive(Debug, Clone)]
struct Field<V> {
    start: usize,
    end: usize,
    value: V,
}

/// Smallest buffer a map's first text gets: most keys of a batch hold a few short texts, and
/// growing from a text's own length reallocated two or three times before it held them.
const MIN_TEXT_BYTES: usize = 64;

/// What [`FieldMap::reserve`] expects a text to take before the map holds any.
const EXPECTED_TEXT_BYTES: usize = 24;

/// Appends `field` to `text`, returning its range.
#[inline]
fn append(text: &mut String, field: &str) -> (usize, usize) {
    // Doubling as usual, from `MIN_TEXT_BYTES`.
    if text.capacity() - text.len() < field.len() {
        text.reserve(field.len().max(MIN_TEXT_BYTES));
    }
    let start = text.len();
    text.push_str(field);
    (start, text.len())
}

/// The text of `field` in `text`. Fields are only made for whole inserted texts, so the range
/// is always valid; `""` keeps the lookup total all the same.
#[inline]
fn text_of<'t, V>(text: &'t str, field: &Field<V>) -> &'t str {
    text.get(field.start..field.end).unwrap_or_default()
}

/// A map from text to `V` whose texts share one buffer: a hash's fields and their increments,
/// a sorted set's members and their score increments. Iteration order is unspecified.
#[derive(Clone)]
pub struct FieldMap<V> {
    /// Every text inserted, back to back (a removed one stays, unreferenced, until the map
    /// is dropped).
    text: String,
    fields: HashTable<Field<V>>,
    /// Fields added by [`FieldMap::insert_new`], not hashed yet: the next lookup through
    /// `&mut self` moves them into `fields`; until then a lookup through `&self` scans them.
    pending: Vec<Field<V>>,
    hasher: DefaultHashBuilder,
}

impl<V> FieldMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        FieldMap {
            text: String::new(),
            fields: HashTable::new(),
            pending: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len() + self.pending.len()
    }

    /// True when there is no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The fields and their values.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            text: &self.text,
            fields: self.fields.iter().chain(self.pending.iter()),
        }
    }

    /// The fields.
    pub fn keys(&self) -> Keys<'_, V> {
        Keys(self.iter())
    }

    /// The values.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.fields.iter().chain(&self.pending).map(|f| &f.value)
    }

    /// The value of `field`.
    pub fn get(&self, field: &str) -> Option<&V> {
        let hash = self.hasher.hash_one(field);
        let same = |f: &&Field<V>| text_of(&self.text, f) == field;
        self.fields
            .find(hash, |f| same(&f))
            .or_else(|| self.pending.iter().find(same))
            .map(|f| &f.value)
    }

    /// True when `field` is present.
    pub fn contains_key(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// The value of `field`, set to `default` first when the field is new (only then is its
    /// text copied into the buffer).
    #[inline]
    pub fn or_insert(&mut self, field: &str, default: V) -> &mut V {
        self.hash_pending();
        let FieldMap {
            text, fields, hasher, ..
        } = self;
        let hash = hasher.hash_one(field);
        let entry = fields.entry(
            hash,
            |f| text_of(text, f) == field,
            |f| hasher.hash_one(text_of(text, f)),
        );
        match entry {
            Entry::Occupied(found) => &mut found.into_mut().value,
            Entry::Vacant(room) => {
                let (start, end) = append(text, field);
                &mut room
                    .insert(Field {
                        start,
                        end,
                        value: default,
                    })
                    .into_mut()
                    .value
            }
        }
    }

    /// Adds `field`, which the caller knows is not in the map yet, with `value`: no hashing,
    /// no lookup (a batch's packed fields are distinct by construction). The field is hashed
    /// by the next lookup that can change the map, if any: a batch's maps are mostly only
    /// iterated.
    #[inline]
    pub fn insert_new(&mut self, field: &str, value: V) {
        debug_assert!(
            self.get(field).is_none(),
            "insert_new of a present field {field:?}"
        );
        let (start, end) = append(&mut self.text, field);
        self.pending.push(Field { start, end, value });
    }

    /// Moves the fields of [`FieldMap::insert_new`] into the table.
    fn hash_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let FieldMap {
            text,
            fields,
            pending,
            hasher,
        } = self;
        let rehash = |f: &Field<V>| hasher.hash_one(text_of(text, f));
        fields.reserve(pending.len(), rehash);
        for f in pending.drain(..) {
            fields.insert_unique(rehash(&f), f, rehash);
        }
    }

    /// Sets `field` to `value`, returning the value it had.
    pub fn insert(&mut self, field: &str, value: V) -> Option<V> {
        self.hash_pending();
        let hash = self.hasher.hash_one(field);
        let text = &self.text;
        if let Some(found) = self.fields.find_mut(hash, |f| text_of(text, f) == field) {
            return Some(std::mem::replace(&mut found.value, value));
        }
        let (start, end) = append(&mut self.text, field);
        let FieldMap {
            text, fields, hasher, ..
        } = self;
        fields.insert_unique(hash, Field { start, end, value }, |f| {
            hasher.hash_one(text_of(text, f))
        });
        None
    }

    /// Removes `field`, returning its value (its text stays in the buffer until the map is
    /// dropped).
    pub fn remove(&mut self, field: &str) -> Option<V> {
        self.hash_pending();
        let hash = self.hasher.hash_one(field);
        let text = &self.text;
        let found = self.fields.find_entry(hash, |f| text_of(text, f) == field).ok()?;
        Some(found.remove().0.value)
    }

    /// Makes room for `more` new fields at once, and for their texts.
    pub fn reserve(&mut self, more: usize) {
        self.reserve_text(more);
        let FieldMap {
            text, fields, hasher, ..
        } = self;
        fields.reserve(more, |f| hasher.hash_one(text_of(text, f)));
    }

    /// [`FieldMap::reserve`] for `more` fields that [`FieldMap::insert_new`] will add.
    pub fn reserve_new(&mut self, more: usize) {
        self.reserve_text(more);
        self.pending.reserve(more);
    }

    /// Room for `more` new texts: as long as the texts so far on average, or
    /// [`EXPECTED_TEXT_BYTES`] each.
    fn reserve_text(&mut self, more: usize) {
        let per_text = self
            .text
            .len()
            .checked_div(self.len())
            .map_or(EXPECTED_TEXT_BYTES, |mean| mean + 1);
        self.text.reserve(more.saturating_mul(per_text));
    }
}

impl<V> Default for FieldMap<V> {
    fn default() -> Self {
        FieldMap::new()
    }
}

impl<V: PartialEq> PartialEq for FieldMap<V> {
    /// The same fields with equal values, whatever the order or the buffers.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(f, v)| other.get(f) == Some(v))
    }
}

impl<V: fmt::Debug> fmt::Debug for FieldMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V> FromIterator<(K, V)> for FieldMap<V> {
    /// A map of the pairs; a field given twice keeps its last value.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut map = FieldMap::new();
        for (field, value) in pairs {
            map.insert(field.as_ref(), value);
        }
        map
    }
}

impl<'m, V> IntoIterator for &'m FieldMap<V> {
    type Item = (&'m str, &'m V);
    type IntoIter = Iter<'m, V>;
    fn into_iter(self) -> Iter<'m, V> {
        self.iter()
    }
}

/// The fields of a [`FieldMap`] and their values.
#[derive(Clone)]
pub struct Iter<'m, V> {
    text: &'m str,
    fields: std::iter::Chain<hashbrown::hash_table::Iter<'m, Field<V>>, std::slice::Iter<'m, Field<V>>>,
}

impl<'m, V> Iterator for Iter<'m, V> {
    type Item = (&'m str, &'m V);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let field = self.fields.next()?;
        Some((text_of(self.text, field), &field.value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.fields.size_hint()
    }
}

impl<V> ExactSizeIterator for Iter<'_, V> {}

impl<V> fmt::Debug for Iter<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("left", &self.fields.size_hint().0)
            .finish()
    }
}

/// The fields of a [`FieldMap`] (or the texts of a [`FieldSet`]).
#[derive(Clone, Debug)]
pub struct Keys<'m, V>(Iter<'m, V>);

impl<'m, V> Iterator for Keys<'m, V> {
    type Item = &'m str;
    #[inline]
    fn next(&mut self) -> Option<&'m str> {
        self.0.next().map(|(field, _)| field)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<V> ExactSizeIterator for Keys<'_, V> {}

/// A set of texts sharing one buffer: a HyperLogLog's inserted values, a set's members.
/// Iteration order is unspecified.
#[derive(Clone, Default, PartialEq)]
pub struct FieldSet(FieldMap<()>);

impl FieldSet {
    /// An empty set.
    pub fn new() -> Self {
        FieldSet(FieldMap::new())
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The texts.
    pub fn iter(&self) -> Keys<'_, ()> {
        self.0.keys()
    }

    /// True when `value` is in the set.
    pub fn contains(&self, value: &str) -> bool {
        self.0.contains_key(value)
    }

    /// Adds `value`; true when it was not there yet.
    #[inline]
    pub fn insert(&mut self, value: &str) -> bool {
        let before = self.0.len();
        self.0.or_insert(value, ());
        self.0.len() > before
    }

    /// Makes room for `more` new texts at once.
    pub fn reserve(&mut self, more: usize) {
        self.0.reserve(more);
    }
}

impl fmt::Debug for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>> FromIterator<K> for FieldSet {
    fn from_iter<I: IntoIterator<Item = K>>(values: I) -> Self {
        let mut set = FieldSet::new();
        for value in values {
            set.insert(value.as_ref());
        }
        set
    }
}

impl<'s> IntoIterator for &'s FieldSet {
    type Item = &'s str;
    type IntoIter = Keys<'s, ()>;
    fn into_iter(self) -> Keys<'s, ()> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::btree_map::Entry;
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// One operation on a map, on a few short texts so that they repeat.
    #[derive(Debug, Clone)]
    enum Op {
        Add(String, i64),
        Insert(String, i64),
        /// `insert_new` when the field is absent (its contract), `or_insert` otherwise.
        InsertNew(String, i64),
        Remove(String),
        Reserve(usize),
        ReserveNew(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let text = "[a-c~:é]{0,4}";
        prop_oneof![
            (text, -5i64..5).prop_map(|(t, n)| Op::Add(t, n)),
            (text, -5i64..5).prop_map(|(t, n)| Op::Insert(t, n)),
            (text, -5i64..5).prop_map(|(t, n)| Op::InsertNew(t, n)),
            text.prop_map(Op::Remove),
            (0usize..40).prop_map(Op::Reserve),
            (0usize..40).prop_map(Op::ReserveNew),
        ]
    }

    fn contents(map: &FieldMap<i64>) -> BTreeMap<String, i64> {
        map.iter().map(|(f, v)| (f.to_owned(), *v)).collect()
    }

    proptest! {
        /// Whatever is added, set and removed, the map holds what a `BTreeMap` of owned
        /// strings holds: every lookup, the iteration (each field once), the length.
        #[test]
        fn a_field_map_holds_what_a_map_of_strings_holds(ops in prop::collection::vec(op(), 0..200)) {
            let mut map = FieldMap::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Add(f, n) => {
                        *map.or_insert(&f, 0) += n;
                        *model.entry(f).or_insert(0) += n;
                    }
                    Op::Insert(f, n) => prop_assert_eq!(map.insert(&f, n), model.insert(f, n)),
                    Op::Remove(f) => prop_assert_eq!(map.remove(&f), model.remove(&f)),
                    Op::InsertNew(f, n) => {
                        // Checked through `&self` first: `get` finds fields not hashed yet.
                        prop_assert_eq!(map.get(&f), model.get(&f));
                        match model.entry(f.clone()) {
                            Entry::Occupied(mut present) => {
                                *map.or_insert(&f, 0) += n;
                                *present.get_mut() += n;
                            }
                            Entry::Vacant(absent) => {
                                map.insert_new(&f, n);
                                absent.insert(n);
                            }
                        }
                    }
                    Op::Reserve(n) => map.reserve(n),
                    Op::ReserveNew(n) => map.reserve_new(n),
                }
                prop_assert_eq!(map.len(), model.len());
            }
            prop_assert_eq!(map.keys().count(), model.len());
            prop_assert_eq!(map.values().sum::<i64>(), model.values().sum::<i64>());
            for (f, v) in &model {
                prop_assert_eq!(map.get(f), Some(v));
                prop_assert!(map.contains_key(f));
            }
            prop_assert!(!map.contains_key("zz"));
            prop_assert_eq!(contents(&map), model.clone());
            // Equal to a map built from the model in another order, however the buffers differ.
            let rebuilt: FieldMap<i64> = model.iter().rev().map(|(f, v)| (f.as_str(), *v)).collect();
            prop_assert_eq!(&rebuilt, &map);
            prop_assert_eq!(map.clone(), map.clone());
        }

        /// A set holds each text once, as a `BTreeSet` does.
        #[test]
        fn a_field_set_holds_each_text_once(values in prop::collection::vec("[ab:~]{0,3}", 0..100)) {
            let mut set = FieldSet::new();
            let mut model = BTreeSet::new();
            for v in &values {
                prop_assert_eq!(set.insert(v), model.insert(v.clone()));
            }
            prop_assert_eq!(set.len(), model.len());
            prop_assert_eq!(set.iter().map(str::to_owned).collect::<BTreeSet<_>>(), model.clone());
            prop_assert!(values.iter().all(|v| set.contains(v)));
            prop_assert_eq!(values.iter().collect::<FieldSet>(), set);
        }
    }

    #[test]
    fn maps_differ_by_a_value_or_a_field() {
        let a: FieldMap<i64> = [("x", 1), ("y", 2)].into_iter().collect();
        let b: FieldMap<i64> = [("x", 1), ("y", 3)].into_iter().collect();
        let c: FieldMap<i64> = [("x", 1), ("z", 2)].into_iter().collect();
        let d: FieldMap<i64> = [("x", 1)].into_iter().collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(format!("{d:?}"), r#"{"x": 1}"#);
        let s: FieldSet = ["v"].into_iter().collect();
        assert_eq!(format!("{s:?}"), r#"{"v"}"#);
        assert!(FieldSet::new().is_empty() && FieldMap::<f64>::default().is_empty());
    }
}
