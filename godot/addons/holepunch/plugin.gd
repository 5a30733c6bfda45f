@tool
extends EditorPlugin
## Registers the HolePunch node type (Add Child Node > HolePunch) while the addon is enabled.


func _enter_tree() -> void:
	add_custom_type("HolePunch", "Node", preload("holepunch.gd"), preload("holepunch_icon.svg"))


func _exit_tree() -> void:
	remove_custom_type("HolePunch")
