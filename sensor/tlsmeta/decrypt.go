package tlsmeta

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// suite describes the AEAD suites that can be decrypted with a key log.
// CBC suites are not supported: they are rare in API traffic today and
// need MAC-then-encrypt handling for no gain in visibility.
type suite struct {
	keyLen int
	hash   func() hash.Hash
	chacha bool
	tls13  bool
}

var suites = map[uint16]suite{
	0x1301: {keyLen: 16, hash: sha256.New, tls13: true},
	0x1302: {keyLen: 32, hash: sha512.New384, tls13: true},
	0x1303: {keyLen: 32, hash: sha256.New, chacha: true, tls13: true},
	0xc02b: {keyLen: 16, hash: sha256.New}, 0xc02f: {keyLen: 16, hash: sha256.New},
	0xc02c: {keyLen: 32, hash: sha512.New384}, 0xc030: {keyLen: 32, hash: sha512.New384},
	0x009c: {keyLen: 16, hash: sha256.New}, 0x009d: {keyLen: 32, hash: sha512.New384},
	0xcca8: {keyLen: 32, hash: sha256.New, chacha: true}, 0xcca9: {keyLen: 32, hash: sha256.New, chacha: true},
}

// recordKeys decrypts one direction's records.
type recordKeys struct {
	aead  cipher.AEAD
	iv    []byte // 12 bytes (TLS 1.3, ChaCha) or the 4-byte GCM salt (TLS 1.2)
	seq   uint64
	tls13 bool
	// secret and hash let TLS 1.3 move to the next traffic secret on
	// KeyUpdate.
	secret []byte
	s      suite
}

func newAEAD(s suite, key []byte) (cipher.AEAD, error) {
	if s.chacha {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// expandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 7.1).
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, 0) // empty context
	return hkdf.Expand(h, secret, string(info), length)
}

func keys13(s suite, secret []byte) (*recordKeys, error) {
	key, err := expandLabel(s.hash, secret, "key", s.keyLen)
	if err != nil {
		return nil, err
	}
	iv, err := expandLabel(s.hash, secret, "iv", 12)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(s, key)
	if err != nil {
		return nil, err
	}
	return &recordKeys{aead: aead, iv: iv, tls13: true, secret: secret, s: s}, nil
}

// update moves to the next TLS 1.3 traffic secret (KeyUpdate).
func (k *recordKeys) update() (*recordKeys, error) {
	next, err := expandLabel(k.s.hash, k.secret, "traffic upd", k.s.hash().Size())
	if err != nil {
		return nil, err
	}
	return keys13(k.s, next)
}

// prf12 is the TLS 1.2 PRF, P_hash(secret, label + seed) (RFC 5246 5).
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	ls := append([]byte(label), seed...)
	out := make([]byte, 0, n)
	mac := hmac.New(h, secret)
	mac.Write(ls)
	a := mac.Sum(nil)
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out = append(out, mac.Sum(nil)...)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(nil)
	}
	return out[:n]
}

// keys12 derives both directions' keys from the master secret.
func keys12(s suite, master, clientRandom, serverRandom []byte) (client, server *recordKeys, err error) {
	ivLen := 4
	if s.chacha {
		ivLen = 12
	}
	seed := append(append([]byte(nil), serverRandom...), clientRandom...)
	kb := prf12(s.hash, master, "key expansion", seed, 2*s.keyLen+2*ivLen)
	ck, sk := kb[:s.keyLen], kb[s.keyLen:2*s.keyLen]
	civ, siv := kb[2*s.keyLen:2*s.keyLen+ivLen], kb[2*s.keyLen+ivLen:]
	ca, err := newAEAD(s, ck)
	if err != nil {
		return nil, nil, err
	}
	sa, err := newAEAD(s, sk)
	if err != nil {
		return nil, nil, err
	}
	return &recordKeys{aead: ca, iv: civ, s: s}, &recordKeys{aead: sa, iv: siv, s: s}, nil
}

// open decrypts one record (header included) and returns its content type
// and plaintext.
func (k *recordKeys) open(hdr, body []byte) (byte, []byte, error) {
	typ := hdr[0]
	var nonce, aad, ct []byte
	switch {
	case k.tls13 || k.s.chacha:
		nonce = make([]byte, 12)
		copy(nonce, k.iv)
		for i := 0; i < 8; i++ {
			nonce[4+i] ^= byte(k.seq >> (56 - 8*i))
		}
		ct = body
	default: // TLS 1.2 GCM: 8-byte explicit nonce in front of the ciphertext
		if len(body) < 8 {
			return 0, nil, errors.New("record too short")
		}
		nonce = append(append([]byte(nil), k.iv...), body[:8]...)
		ct = body[8:]
	}
	if k.tls13 {
		aad = hdr
	} else {
		if len(ct) < k.aead.Overhead() {
			return 0, nil, errors.New("record too short")
		}
		aad = binary.BigEndian.AppendUint64(nil, k.seq)
		aad = append(aad, typ, hdr[1], hdr[2])
		aad = binary.BigEndian.AppendUint16(aad, uint16(len(ct)-k.aead.Overhead()))
	}
	pt, err := k.aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return 0, nil, fmt.Errorf("decrypt record %d: %w", k.seq, err)
	}
	k.seq++
	if k.tls13 {
		// Strip padding; the real content type is the last non-zero byte.
		i := len(pt) - 1
		for i >= 0 && pt[i] == 0 {
			i--
		}
		if i < 0 {
			return 0, nil, errors.New("record without content type")
		}
		return pt[i], pt[:i], nil
	}
	return typ, pt, nil
}
