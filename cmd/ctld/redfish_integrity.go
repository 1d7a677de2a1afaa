package main

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/fwbuild/fwbuild/contract"
	rf "github.com/fwbuild/fwbuild/contract/redfish"
	"github.com/fwbuild/fwbuild/contract/unit"
)

// The TPM through Redfish (DMTF's ComponentIntegrity, see
// contract/redfish/integrity.go): GET ComponentIntegrity/TPM lists the
// SHA-256 PCRs, POST its TPMGetSignedMeasurements action quotes them over
// the caller's nonce (quoteOn, the console's `ctld quote` too), and the host's
// Certificates collection holds the attestation key's certificate, which
// the action's Certificate parameter names.
//
// The attestation key's certificate is issued by the Redfish service's own
// TLS key: a verifier who pinned the service's certificate can then tell
// that the key signing quotes belongs to the same unit, even from a saved
// certificate. It is not the TPM vendor's proof that the key lives in a TPM
// (the endorsement key and ActivateCredential are the fleet's enrolment
// step; see package attest).

// measuredPCRs are the PCRs ComponentIntegrity/TPM lists: all 24 of a PC
// client TPM's SHA-256 bank, so that any selection a caller quotes can be
// checked against them.
var measuredPCRs = func() []int {
	p := make([]int, 24)
	for i := range p {
		p[i] = i
	}
	return p
}()

// tpmService is the service's TPM.
type tpmService struct {
	open   func() (io.ReadWriteCloser, error)
	issuer tls.Certificate // the service's TLS certificate and key
	board  string
	serial string

	// mu makes TPM use one caller at a time: /dev/tpm0 (without the
	// resource manager) admits one open, and two callers creating the
	// attestation key at once would each wait for the other's RSA key.
	mu     sync.Mutex
	akCert []byte // DER, issued once per boot
}

// with runs f on an open TPM.
func (t *tpmService) with(f func(rw io.ReadWriter) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rw, err := t.open()
	if err != nil {
		return err
	}
	defer rw.Close()
	return f(rw)
}

// certificate is the attestation key's certificate (DER).
func (t *tpmService) certificate() ([]byte, error) {
	t.mu.Lock()
	have := t.akCert
	t.mu.Unlock()
	if have != nil {
		return have, nil
	}
	var public []byte
	err := t.with(func(rw io.ReadWriter) error {
		ak, pub, err := loadAK(rw)
		if err != nil {
			return err
		}
		public = pub
		return tpm2.FlushContext(rw, ak)
	})
	if err != nil {
		return nil, err
	}
	der, err := t.issueAKCert(public)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.akCert = der
	t.mu.Unlock()
	return der, nil
}

// issueAKCert certifies the attestation key (its TPMT_PUBLIC) with the
// service's key, valid as long as the TLS certificate.
func (t *tpmService) issueAKCert(public []byte) ([]byte, error) {
	pub, err := tpm2.DecodePublic(public)
	if err != nil {
		return nil, fmt.Errorf("tpm: attestation key: %w", err)
	}
	key, err := pub.Key()
	if err != nil {
		return nil, fmt.Errorf("tpm: attestation key: %w", err)
	}
	leaf := t.issuer.Leaf
	if leaf == nil {
		return nil, errors.New("redfish: the service's certificate is not parsed")
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:       sn,
		Subject:            pkix.Name{CommonName: "TPM attestation key " + t.serial, Organization: []string{"fwbuild " + t.board}, SerialNumber: t.serial},
		NotBefore:          leaf.NotBefore,
		NotAfter:           leaf.NotAfter,
		KeyUsage:           x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{rf.AIKCertificateEKU},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, leaf, key, t.issuer.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("redfish: the attestation key's certificate: %w", err)
	}
	return der, nil
}

// tpmFailed answers 500 for a TPM that did not do what (logged too).
func (s *redfishService) tpmFailed(w http.ResponseWriter, what string, err error) {
	s.log.Warn("redfish: the TPM did not "+what, "err", err)
	writeError(w, http.StatusInternalServerError, rf.NewError(rf.MsgGeneralError,
		"A general error has occurred: the TPM did not "+what+" ("+err.Error()+").",
		"Retry; if it persists, see the TPM's state on ctld's console (its measured line)."))
}

// noTPM answers a request for the TPM of a unit without one.
func noTPM(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, rf.NewError(rf.MsgResourceNotFound,
		"The requested resource of type ComponentIntegrity named 'TPM' was not found.",
		"This unit has no TPM (its console's measured line says so): there is nothing to quote.", "ComponentIntegrity", rf.TPMIntegrityID))
}

// integrity serves ComponentIntegrity[/...].
func (s *redfishService) integrity(w http.ResponseWriter, r *http.Request, p string, who principal) {
	switch p {
	case rf.ComponentIntegrity:
		s.only(w, r, "GET", func() {
			var ids []string
			if s.tpm != nil {
				ids = append(ids, rf.TPMIntegrity)
			}
			writeJSON(w, http.StatusOK, collection(rf.ComponentIntegrity, "#ComponentIntegrityCollection.ComponentIntegrityCollection", "Component Integrity", ids))
		})
		return
	case rf.TPMIntegrity, rf.TPMSignedTarget, rf.TPMSignedInfo:
	default:
		notFound(w, "Resource", r.URL.Path)
		return
	}
	if s.tpm == nil {
		noTPM(w)
		return
	}
	switch p {
	case rf.TPMIntegrity:
		s.only(w, r, "GET", func() { s.tpmIntegrity(w) })
	case rf.TPMSignedInfo:
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, rf.ActionInfo{ODataID: rf.TPMSignedInfo, ODataType: "#ActionInfo.v1_3_0.ActionInfo",
				ID: "TPMGetSignedMeasurementsActionInfo", Name: "TPMGetSignedMeasurements Action Info",
				Parameters: []rf.ActionParameter{
					{Name: "Certificate", Required: true, DataType: "Object", ObjectDataType: "#Certificate.Certificate", AllowableValues: []string{rf.AKCertificate}},
					{Name: "Nonce", DataType: "String"},
					{Name: "PCRSelection", Required: true, DataType: "String"},
					{Name: "Scheme", Required: true, DataType: "String", AllowableValues: []string{rf.QuoteScheme()}},
				}})
		})
	case rf.TPMSignedTarget:
		if r.Method != http.MethodPost {
			notAllowed(w, r, "POST")
			return
		}
		// DMTF's privilege registry: POST on ComponentIntegrity needs
		// ConfigureManager, which of Redfish's roles only Administrator has.
		if who.role != unit.RoleAdministrator {
			forbidden(w, r, "an Administrator account (ConfigureManager)")
			return
		}
		s.tpmSigned(w, r)
	}
}

func (s *redfishService) tpmIntegrity(w http.ResponseWriter) {
	var pcrs map[string]string
	err := s.tpm.with(func(rw io.ReadWriter) (err error) {
		pcrs, err = readPCRsOn(rw, measuredPCRs)
		return err
	})
	ci := rf.ComponentIntegrityResource{ODataID: rf.TPMIntegrity, ODataType: "#ComponentIntegrity.v1_2_0.ComponentIntegrity",
		ID: rf.TPMIntegrityID, Name: "The host's TPM", Description: "TPM 2.0 of the unit: its SHA-256 PCRs, and quotes over a verifier's nonce",
		ComponentIntegrityEnabled: true, ComponentIntegrityType: "TPM", ComponentIntegrityTypeVersion: "2.0",
		TargetComponentURI: rf.TPMTrustedModule, Status: rf.Status{State: "Enabled", Health: "OK"},
		Actions: rf.IntegrityActions{TPMGetSignedMeasurements: &rf.ActionTarget{Target: rf.TPMSignedTarget, ActionInfo: rf.TPMSignedInfo}},
		Links:   rf.IntegrityLinks{ComponentsProtected: []rf.ODataID{{ID: rf.System(rf.HostID)}}},
		TPM:     &rf.TPMInfo{NonceSizeBytesMaximum: rf.NonceSizeBytesMaximum}}
	if err != nil {
		s.log.Warn("redfish: read PCRs", "err", err)
		ci.Status.Health = "Critical"
	} else if ci.TPM.MeasurementSet, err = rf.MeasurementSet(pcrs); err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ci)
}

const tpmAction = "TPMGetSignedMeasurements"

// tpmSigned runs the action: 200 with SignedMeasurements, 400 naming the
// parameter that is missing or wrong.
func (s *redfishService) tpmSigned(w http.ResponseWriter, r *http.Request) {
	var body rf.TPMGetSignedMeasurements
	if !decodeBody(w, r, &body) {
		return
	}
	missing := func(param string) {
		badRequest(w, rf.MsgActionParameterMissing, fmt.Sprintf("The action %s requires the parameter %s to be present in the request body.", tpmAction, param),
			"Supply the action with the required parameter in the request body when the request is resubmitted.", tpmAction, param)
	}
	wrong := func(param, value string, why error) {
		badRequest(w, rf.MsgActionParameterValueFormat,
			fmt.Sprintf("The value '%s' for the parameter %s in the action %s is of a different format than the parameter can accept.", value, param, tpmAction),
			fmt.Sprintf("%s: %v.", param, why), value, param, tpmAction)
	}
	switch {
	case body.Certificate == nil || body.Certificate.ID == "":
		missing("Certificate")
		return
	case body.PCRSelection == "":
		missing("PCRSelection")
		return
	case body.Scheme == "":
		missing("Scheme")
		return
	}
	if strings.TrimSuffix(body.Certificate.ID, "/") != rf.AKCertificate {
		badRequest(w, rf.MsgActionParameterValueError, fmt.Sprintf("The value for the parameter Certificate in the action %s is invalid.", tpmAction),
			"Give {\"@odata.id\": \""+rf.AKCertificate+"\"}, the attestation key's certificate.", "Certificate", tpmAction)
		return
	}
	pcrs, err := rf.ParsePCRSelection(body.PCRSelection)
	if err != nil {
		wrong("PCRSelection", body.PCRSelection, err)
		return
	}
	if err := rf.CheckScheme(body.Scheme); err != nil {
		wrong("Scheme", body.Scheme, err)
		return
	}
	var nonce []byte
	if body.Nonce == "" {
		// The schema's rule: without a Nonce the service makes one (the
		// caller finds it in the quoted structure's extraData).
		nonce = make([]byte, 32)
		rand.Read(nonce)
	} else if nonce, err = rf.ParseNonce(body.Nonce); err != nil {
		wrong("Nonce", body.Nonce, err)
		return
	}
	var q contract.Quote
	err = s.tpm.with(func(rw io.ReadWriter) (err error) {
		q, err = quoteOn(r.Context(), rw, nonce, pcrs)
		return err
	})
	if err != nil {
		s.tpmFailed(w, "produce the quote", err)
		return
	}
	s.log.Info("redfish: quote", "pcrs", pcrs, "nonce", hex.EncodeToString(nonce))
	writeJSON(w, http.StatusOK, rf.SignedResponse(q))
}

// hostCertificates serves the host's Certificates collection and the
// attestation key's certificate.
func (s *redfishService) hostCertificates(w http.ResponseWriter, r *http.Request, id string) {
	if s.tpm == nil {
		notFound(w, "CertificateCollection", rf.HostCertificates)
		return
	}
	if id == "" {
		s.only(w, r, "GET", func() {
			writeJSON(w, http.StatusOK, collection(rf.HostCertificates, "#CertificateCollection.CertificateCollection", "Certificates", []string{rf.AKCertificate}))
		})
		return
	}
	if id != rf.AKCertificateID {
		notFound(w, "Certificate", id)
		return
	}
	s.only(w, r, "GET", func() {
		der, err := s.tpm.certificate()
		if err != nil {
			s.tpmFailed(w, "give its attestation key", err)
			return
		}
		writeJSON(w, http.StatusOK, certificateResource(der))
	})
}

func certificateResource(der []byte) rf.CertificateResource {
	c, _ := x509.ParseCertificate(der) // ours, just made
	first := func(s []string) string {
		if len(s) == 0 {
			return ""
		}
		return s[0]
	}
	sum := sha256.Sum256(der)
	return rf.CertificateResource{ODataID: rf.AKCertificate, ODataType: "#Certificate.v1_3_0.Certificate", ID: rf.AKCertificateID,
		Name: "TPM attestation key", Description: "The key TPMGetSignedMeasurements signs with, certified by this service's TLS key",
		CertificateString: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), CertificateType: "PEM",
		Subject:        rf.Identifier{CommonName: c.Subject.CommonName, Organization: first(c.Subject.Organization)},
		Issuer:         rf.Identifier{CommonName: c.Issuer.CommonName, Organization: first(c.Issuer.Organization)},
		ValidNotBefore: c.NotBefore.UTC().Format(time.RFC3339), ValidNotAfter: c.NotAfter.UTC().Format(time.RFC3339),
		SerialNumber: c.SerialNumber.Text(16), KeyUsage: []string{"DigitalSignature"},
		Fingerprint: hex.EncodeToString(sum[:]), FingerprintHashAlgorithm: rf.AlgSHA256Name,
		SignatureAlgorithm: "1.2.840.10045.4.3.2", // ecdsa-with-SHA256: the TLS key is P-256
	}
}

// newTPMService is the service's TPM, or nil when the machine has none.
func newTPMService(p tpmPaths, issuer tls.Certificate, board, serial string) *tpmService {
	if _, ok, _ := p.measured(); !ok {
		return nil
	}
	return &tpmService{open: p.open, issuer: issuer, board: board, serial: serial}
}
