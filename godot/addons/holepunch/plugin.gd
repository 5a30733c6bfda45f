@tool
extends EditorPlugin
## The HolePunch addon's editor plugin. The node type HolePunch (Add Child Node > HolePunch,
## or HolePunch.new()) comes from holepunch.gd's class_name and @icon, which Godot registers
## whether or not the plugin is enabled; registering it again here with add_custom_type()
## would list it twice, and a preload() of the icon here fails on the first import of a fresh
## clone (the SVG is not imported yet when the plugin's script is parsed). So the plugin adds
## nothing: enabling it is harmless and kept for projects that did.
