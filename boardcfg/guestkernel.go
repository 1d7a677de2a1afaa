package boardcfg

import (
	"encoding/json"
	"reflect"

	"gopkg.in/yaml.v3"
)

// GuestKernel is a guest's kernel: as a scalar, "dom0" (the dom0 kernel,
// which runs as a PV guest too) or a component with files.bzimage; as a
// mapping {source, base, fragment}, a kernel built for the guest from a
// linux-source component, as dom0's can be (a PV guest needs a small part
// of what dom0 does, and boots in a fraction of the time).
type GuestKernel struct {
	Ref   string
	Build *Kernel
}

// IsDom0 says whether the guest runs the dom0 kernel.
func (k GuestKernel) IsDom0() bool { return k.Ref == GuestKernelDom0 }

// IsZero says whether no kernel was given.
func (k GuestKernel) IsZero() bool { return k.Ref == "" && k.Build == nil }

// GuestKernelDom0 is the GuestKernel.Ref of a guest that runs the dom0 kernel.
const GuestKernelDom0 = "dom0"

// decodeNode takes both shapes of a guest's kernel: a scalar names it
// ("dom0" or a component), a mapping builds it from source.
func (k *GuestKernel) decodeNode(d *decoder, n *yaml.Node, path string) error {
	*k = GuestKernel{}
	switch n.Kind {
	case yaml.ScalarNode:
		// Empty drops an inherited kernel (a derived board's guest with an
		// image instead); validation asks for one where it is needed.
		if n.Tag != "!!null" {
			k.Ref = n.Value
		}
		return nil
	case yaml.MappingNode:
		var build guestKernelBuild
		if err := d.decode(n, path, reflect.ValueOf(&build).Elem()); err != nil {
			return err
		}
		k.Build = &Kernel{Source: build.Source, Base: build.Base, Fragment: build.Fragment, Patches: build.Patches}
		return nil
	}
	return d.errf(n, path, "want dom0, a component name or a mapping {source, base, fragment, patches}, got %s", kindName(n))
}

// guestKernelBuild is the mapping form of a GuestKernel: a guest's kernel
// is built from source (a component or a file is the scalar form).
type guestKernelBuild struct {
	Source   string   `yaml:"source" json:"source"`
	Base     string   `yaml:"base,omitempty" json:"base,omitempty"`
	Fragment string   `yaml:"fragment" json:"fragment"`
	Patches  []string `yaml:"patches,omitempty" json:"patches,omitempty"`
}

// shape is the profile's form of k: a name as a string, a build as its
// mapping.
func (k GuestKernel) shape() any {
	if k.Build != nil {
		return guestKernelBuild{Source: k.Build.Source, Base: k.Build.Base, Fragment: k.Build.Fragment, Patches: k.Build.Patches}
	}
	return k.Ref
}

// MarshalJSON and MarshalYAML write the profile's shape (see shape).
func (k GuestKernel) MarshalJSON() ([]byte, error) { return json.Marshal(k.shape()) }
func (k GuestKernel) MarshalYAML() (any, error)    { return k.shape(), nil }
