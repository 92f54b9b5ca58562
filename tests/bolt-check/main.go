// bolt-check: Go's own bbolt as the oracle for pausebake's bolt module.
//
//	bolt-check dump FILE                     tx.Check(), key order and lookups, then the dump
//	bolt-check generate FILE SEED [nosync] [PAGESIZE]  a new file holding a random tree
//	bolt-check mutate FILE SEED [nosync]     random changes in Go transactions on an existing file
//	bolt-check images FILE N                 a containerd-shaped meta.db with N images
//	bolt-check set FILE A/B/C KEY VALUE      one Put in one transaction (NoFreelistSync)
//
// The dump is the contract with src/bolt: one line per bucket and per value, depth first in
// key order, every key and value in lower-case hex, so both sides compare byte for byte:
//
//	bucket <path> <sequence>
//	value <path> <hex value>
//
// where <path> is "/" for the root bucket and "/<hex key>/<hex key>..." below it.
// "nosync" sets NoFreelistSync, as containerd >= 1.7 does.
//
// Built offline against Debian's golang-github-coreos-bbolt-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o bolt-check ./tests/bolt-check
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "dump":
		os.Exit(dump(os.Args[2]))
	case "generate":
		pageSize, _ := strconv.Atoi(argOr(5, "0"))
		err = generate(os.Args[2], seedArg(), nosyncArg(), pageSize)
	case "mutate":
		err = mutate(os.Args[2], seedArg(), nosyncArg())
	case "images":
		n, e := strconv.Atoi(argOr(3, ""))
		if e != nil {
			usage()
		}
		err = images(os.Args[2], n)
	case "set":
		if len(os.Args) != 6 {
			usage()
		}
		err = set(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bolt-check: %s\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bolt-check dump FILE | generate FILE SEED [nosync] [PAGESIZE] | mutate FILE SEED [nosync] | images FILE N | set FILE A/B/C KEY VALUE")
	os.Exit(2)
}

func argOr(i int, def string) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return def
}

func seedArg() int64 {
	s, err := strconv.ParseInt(argOr(3, ""), 10, 64)
	if err != nil {
		usage()
	}
	return s
}

func nosyncArg() bool { return argOr(4, "") == "nosync" }

// dump opens FILE read-only, reports every tx.Check() error and every key that is out of order
// or cannot be found by lookup on stderr, and prints the dump on stdout. Exit 1 on any error.
func dump(path string) (code int) {
	defer func() {
		// Loading a "no freelist" file walks the tree and panics on inconsistencies.
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "check: panic: %v\n", r)
			code = 1
		}
	}()
	db, err := bolt.Open(path, 0o644, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "check: opening %s: %s\n", path, err)
		return 1
	}
	defer db.Close()
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	errors := 0
	err = db.View(func(tx *bolt.Tx) error {
		for e := range tx.Check() {
			fmt.Fprintf(os.Stderr, "check: %s\n", e)
			errors++
		}
		fmt.Fprintf(out, "bucket / %d\n", tx.Cursor().Bucket().Sequence())
		root := tx.Cursor()
		var prev []byte
		for k, _ := root.First(); k != nil; k, _ = root.Next() {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				fmt.Fprintf(os.Stderr, "check: root: key %x after %x\n", k, prev)
				errors++
			}
			prev = append([]byte(nil), k...)
			b := tx.Bucket(k)
			if b == nil {
				fmt.Fprintf(os.Stderr, "check: root: key %x is not a bucket\n", k)
				errors++
				continue
			}
			errors += dumpBucket(out, "/"+hex.EncodeToString(k), b)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "check: %s\n", err)
		errors++
	}
	if errors > 0 {
		return 1
	}
	return 0
}

func dumpBucket(out *bufio.Writer, path string, b *bolt.Bucket) int {
	errors := 0
	fmt.Fprintf(out, "bucket %s %d\n", path, b.Sequence())
	c := b.Cursor()
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			fmt.Fprintf(os.Stderr, "check: %s: key %x after %x\n", path, k, prev)
			errors++
		}
		prev = append([]byte(nil), k...)
		p := path + "/" + hex.EncodeToString(k)
		if child := b.Bucket(k); child != nil {
			errors += dumpBucket(out, p, child)
			continue
		}
		// A lookup bisects the branch pages: it finds the key only if the key ranges are right.
		if got := b.Get(k); !bytes.Equal(got, v) {
			fmt.Fprintf(os.Stderr, "check: %s: lookup gives %x, cursor %x\n", p, got, v)
			errors++
		}
		fmt.Fprintf(out, "value %s %s\n", p, hex.EncodeToString(v))
	}
	return errors
}

func openRW(path string, nosync bool) (*bolt.DB, error) {
	return bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second, NoFreelistSync: nosync})
}

// generate writes a random tree in several transactions, deleting some of it on the way so
// the file has free pages (a freelist page, or none with nosync).
func generate(path string, seed int64, nosync bool, pageSize int) error {
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second, NoFreelistSync: nosync, PageSize: pageSize})
	if err != nil {
		return err
	}
	defer db.Close()
	r := rand.New(rand.NewSource(seed))
	for t := 0; t < 3; t++ {
		err := db.Update(func(tx *bolt.Tx) error {
			for i := 0; i < 1+r.Intn(3); i++ {
				b, err := tx.CreateBucketIfNotExists(randKey(r))
				if err != nil {
					return err
				}
				if err := fill(r, b, 0); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := db.Update(func(tx *bolt.Tx) error { return change(r, tx) }); err != nil {
			return err
		}
	}
	return nil
}

// mutate applies a few random transactions to an existing file.
func mutate(path string, seed int64, nosync bool) error {
	db, err := openRW(path, nosync)
	if err != nil {
		return err
	}
	defer db.Close()
	r := rand.New(rand.NewSource(seed))
	for t := 0; t < 3; t++ {
		if err := db.Update(func(tx *bolt.Tx) error { return change(r, tx) }); err != nil {
			return err
		}
	}
	return nil
}

// change deletes, rewrites and adds at random places of the tree.
func change(r *rand.Rand, tx *bolt.Tx) error {
	var roots [][]byte
	_ = tx.ForEach(func(k []byte, _ *bolt.Bucket) error {
		roots = append(roots, append([]byte(nil), k...))
		return nil
	})
	if len(roots) > 1 && r.Intn(4) == 0 {
		if err := tx.DeleteBucket(roots[r.Intn(len(roots))]); err != nil {
			return err
		}
	}
	return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return changeBucket(r, b, 0) })
}

func changeBucket(r *rand.Rand, b *bolt.Bucket, depth int) error {
	var keys [][]byte
	var buckets [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil && b.Bucket(k) != nil {
			buckets = append(buckets, append([]byte(nil), k...))
		} else {
			keys = append(keys, append([]byte(nil), k...))
		}
	}
	for _, k := range keys {
		switch r.Intn(6) {
		case 0:
			if err := b.Delete(k); err != nil {
				return err
			}
		case 1:
			if err := b.Put(k, randValue(r)); err != nil {
				return err
			}
		}
	}
	for i := 0; i < r.Intn(4); i++ {
		k := randKey(r)
		if b.Bucket(k) == nil {
			if err := b.Put(k, randValue(r)); err != nil {
				return err
			}
		}
	}
	if r.Intn(3) == 0 {
		if err := b.SetSequence(r.Uint64()); err != nil {
			return err
		}
	}
	for _, k := range buckets {
		if r.Intn(8) == 0 {
			if err := b.DeleteBucket(k); err != nil {
				return err
			}
			continue
		}
		if err := changeBucket(r, b.Bucket(k), depth+1); err != nil {
			return err
		}
	}
	if depth < 4 && r.Intn(3) == 0 {
		child, err := b.CreateBucketIfNotExists(randKey(r))
		if err == nil {
			return fill(r, child, depth+1)
		}
	}
	return nil
}

// fill adds keys and nested buckets: mostly small (inline) buckets, sometimes thousands of
// keys (branch pages), large values (overflow pages), empty buckets and deep nesting.
func fill(r *rand.Rand, b *bolt.Bucket, depth int) error {
	if r.Intn(2) == 0 {
		if err := b.SetSequence(r.Uint64() >> uint(r.Intn(64))); err != nil {
			return err
		}
	}
	n := r.Intn(6)
	switch r.Intn(10) {
	case 0:
		n = 0
	case 1:
		n = 500 + r.Intn(2500)
	case 2:
		n = 20 + r.Intn(80)
	}
	for i := 0; i < n; i++ {
		if err := b.Put(randKey(r), randValue(r)); err != nil {
			return err
		}
	}
	if depth >= 8 {
		return nil
	}
	kids := 0
	switch {
	case depth < 2:
		kids = r.Intn(5)
	case r.Intn(3) == 0:
		kids = 1 + r.Intn(2)
	}
	for i := 0; i < kids; i++ {
		k := randKey(r)
		if b.Get(k) != nil {
			continue
		}
		child, err := b.CreateBucketIfNotExists(k)
		if err != nil {
			return err
		}
		if err := fill(r, child, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func randKey(r *rand.Rand) []byte {
	n := 1 + r.Intn(24)
	if r.Intn(50) == 0 {
		n = 200 + r.Intn(3000)
	}
	k := make([]byte, n)
	r.Read(k)
	if r.Intn(2) == 0 {
		// Printable keys share prefixes, as containerd's do.
		for i := range k {
			k[i] = "abcdefgh/:."[r.Intn(11)]
		}
	}
	return k
}

func randValue(r *rand.Rand) []byte {
	var n int
	switch r.Intn(40) {
	case 0:
		n = 4000 + r.Intn(30000)
	case 1, 2:
		n = 0
	default:
		n = r.Intn(120)
	}
	v := make([]byte, n)
	r.Read(v)
	return v
}

// images writes a meta.db shaped like containerd's after importing n images
// (bbolt-format.md §11): for each image its index-less manifest, config and one layer blob
// records, and an image record with target, labels and annotations. Timestamps and digests
// are derived from the image number, so the file is the same on every run.
func images(path string, n int) error {
	db, err := openRW(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	digest := func(kind string, i int) []byte {
		return []byte(fmt.Sprintf("sha256:%064x", uint64(i)*7919+uint64(len(kind))*1000003))
	}
	goTime := func(i int) []byte {
		v := make([]byte, 15)
		v[0] = 1
		binary.BigEndian.PutUint64(v[1:], uint64(63_800_000_000+i))
		binary.BigEndian.PutUint32(v[9:], uint32(i*1000))
		binary.BigEndian.PutUint16(v[13:], 0xffff)
		return v
	}
	varint := func(x int64) []byte {
		buf := make([]byte, binary.MaxVarintLen64)
		return buf[:binary.PutVarint(buf, x)]
	}
	const batch = 500
	for start := 0; start < n; start += batch {
		err := db.Update(func(tx *bolt.Tx) error {
			v1, err := tx.CreateBucketIfNotExists([]byte("v1"))
			if err != nil {
				return err
			}
			if err := v1.Put([]byte("version"), varint(3)); err != nil {
				return err
			}
			ns, err := v1.CreateBucketIfNotExists([]byte("k8s.io"))
			if err != nil {
				return err
			}
			blobs, err := ns.CreateBucketIfNotExists([]byte("content"))
			if err != nil {
				return err
			}
			if _, err := blobs.CreateBucketIfNotExists([]byte("ingests")); err != nil {
				return err
			}
			if blobs, err = blobs.CreateBucketIfNotExists([]byte("blob")); err != nil {
				return err
			}
			imgs, err := ns.CreateBucketIfNotExists([]byte("images"))
			if err != nil {
				return err
			}
			for i := start; i < start+batch && i < n; i++ {
				manifest, config, layer := digest("manifest", i), digest("config", i), digest("layer", i)
				for _, d := range [][]byte{manifest, config, layer} {
					b, err := blobs.CreateBucket(d)
					if err != nil {
						return err
					}
					for k, v := range map[string][]byte{"createdat": goTime(i), "updatedat": goTime(i), "size": varint(int64(400 + i))} {
						if err := b.Put([]byte(k), v); err != nil {
							return err
						}
					}
					labels, err := b.CreateBucket([]byte("labels"))
					if err != nil {
						return err
					}
					if bytes.Equal(d, manifest) {
						if err := labels.Put([]byte("containerd.io/gc.ref.content.config"), config); err != nil {
							return err
						}
						if err := labels.Put([]byte("containerd.io/gc.ref.content.l.0"), layer); err != nil {
							return err
						}
					} else if err := labels.Put([]byte("containerd.io/uncompressed"), digest("diff", i)); err != nil {
						return err
					}
				}
				name := []byte(fmt.Sprintf("registry.example/team-%d/app-%d:v%d", i%37, i, i%5))
				img, err := imgs.CreateBucket(name)
				if err != nil {
					return err
				}
				for k, v := range map[string][]byte{"createdat": goTime(i), "updatedat": goTime(i)} {
					if err := img.Put([]byte(k), v); err != nil {
						return err
					}
				}
				target, err := img.CreateBucket([]byte("target"))
				if err != nil {
					return err
				}
				for k, v := range map[string][]byte{"digest": manifest, "mediatype": []byte("application/vnd.oci.image.manifest.v1+json"), "size": varint(int64(400 + i))} {
					if err := target.Put([]byte(k), v); err != nil {
						return err
					}
				}
				labels, err := img.CreateBucket([]byte("labels"))
				if err != nil {
					return err
				}
				if err := labels.Put([]byte("io.cri-containerd.image"), []byte("managed")); err != nil {
					return err
				}
				ann, err := img.CreateBucket([]byte("annotations"))
				if err != nil {
					return err
				}
				if err := ann.Put([]byte("io.containerd.image.name"), name); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// set puts one key, creating the buckets on the way, as containerd >= 1.7 would commit it.
func set(path, buckets, key, value string) error {
	db, err := openRW(path, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		names := strings.Split(strings.Trim(buckets, "/"), "/")
		b, err := tx.CreateBucketIfNotExists([]byte(names[0]))
		if err != nil {
			return err
		}
		for _, name := range names[1:] {
			if b, err = b.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return b.Put([]byte(key), []byte(value))
	})
}
