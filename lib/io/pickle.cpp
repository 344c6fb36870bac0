#include "io/pickle.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

#include "core/error.h"

namespace oscar::io::pickle {

// ---------------------------------------------------------------------------------------------------------
// Value helpers
// ---------------------------------------------------------------------------------------------------------

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kBytes: return "bytes";
    case Kind::kTuple: return "tuple";
    case Kind::kList: return "list";
    case Kind::kDict: return "dict";
    case Kind::kGlobal: return "global";
    case Kind::kStorage: return "storage";
    case Kind::kTensor: return "tensor";
  }
  return "?";
}

std::vector<std::int64_t> TensorRef::contiguous_stride(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> stride(shape.size());
  std::int64_t step = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    stride[i] = step;
    step *= std::max<std::int64_t>(shape[i], 1);
  }
  return stride;
}

const Value* Value::find(std::string_view key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [entry_key, entry_value] : entries) {
    if (entry_key->kind == Kind::kString && entry_key->text == key) return entry_value.get();
  }
  return nullptr;
}

namespace {

ValuePtr make_value(Kind kind) {
  auto value = std::make_shared<Value>();
  value->kind = kind;
  return value;
}

struct StorageClass {
  const char* name;
  DType dtype;
};

constexpr StorageClass kStorageClasses[] = {
    {"torch.FloatStorage", DType::kFloat32}, {"torch.HalfStorage", DType::kFloat16},
    {"torch.BFloat16Storage", DType::kBFloat16}, {"torch.DoubleStorage", DType::kFloat64},
    {"torch.IntStorage", DType::kInt32}, {"torch.LongStorage", DType::kInt64},
    {"torch.ByteStorage", DType::kUInt8},
};

// torch.<dtype> globals, the extra argument of _rebuild_tensor_v3.
constexpr StorageClass kDtypeGlobals[] = {
    {"torch.float32", DType::kFloat32}, {"torch.float16", DType::kFloat16},
    {"torch.bfloat16", DType::kBFloat16}, {"torch.float64", DType::kFloat64},
    {"torch.int32", DType::kInt32}, {"torch.int64", DType::kInt64},
    {"torch.uint8", DType::kUInt8},
};

constexpr const char* kRebuildTensorV2 = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildTensorV3 = "torch._utils._rebuild_tensor_v3";
constexpr const char* kOrderedDict = "collections.OrderedDict";

bool dtype_from_dtype_global(std::string_view name, DType* dtype) {
  for (const auto& entry : kDtypeGlobals) {
    if (name == entry.name) {
      *dtype = entry.dtype;
      return true;
    }
  }
  return false;
}

}  // namespace

ValuePtr make_none() { return make_value(Kind::kNone); }
ValuePtr make_bool(bool value) {
  auto node = make_value(Kind::kBool);
  node->boolean = value;
  return node;
}
ValuePtr make_int(std::int64_t value) {
  auto node = make_value(Kind::kInt);
  node->integer = value;
  return node;
}
ValuePtr make_float(double value) {
  auto node = make_value(Kind::kFloat);
  node->real = value;
  return node;
}
ValuePtr make_string(std::string value) {
  auto node = make_value(Kind::kString);
  node->text = std::move(value);
  return node;
}
ValuePtr make_tuple(std::vector<ValuePtr> items) {
  auto node = make_value(Kind::kTuple);
  node->items = std::move(items);
  return node;
}
ValuePtr make_list(std::vector<ValuePtr> items) {
  auto node = make_value(Kind::kList);
  node->items = std::move(items);
  return node;
}
ValuePtr make_dict() { return make_value(Kind::kDict); }
ValuePtr make_tensor(TensorRef tensor) {
  auto node = make_value(Kind::kTensor);
  node->tensor = std::move(tensor);
  return node;
}

const char* storage_class_name(DType dtype) {
  for (const auto& entry : kStorageClasses) {
    if (entry.dtype == dtype) return entry.name;
  }
  return nullptr;
}

bool dtype_from_storage_class(std::string_view class_name, DType* dtype) {
  for (const auto& entry : kStorageClasses) {
    if (class_name == entry.name) {
      *dtype = entry.dtype;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------------------

namespace {

// Opcodes (Python's Lib/pickle.py names).
enum Opcode : std::uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNoneOp = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kShortBinString = 'U',
  kBinString = 'T',
  kBinUnicode = 'X',
  kAppend = 'a',
  kGlobal = 'c',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kSetItems = 'u',
  kEmptyDict = '}',
  kEmptyTuple = ')',
  kBinFloat = 'G',
  kProto = 0x80,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kMemoize = 0x94,
  kStackGlobal = 0x93,
  kFrame = 0x95,
};

// Limits against hostile input. Real torch pickles are a few hundred values, a few levels deep.
constexpr std::size_t kMaxValues = std::size_t(1) << 20;    // nodes created
constexpr std::size_t kMaxPushes = std::size_t(1) << 23;    // stack pushes, bounds container sizes
constexpr int kMaxDepth = 64;                               // nesting of containers
constexpr std::size_t kMaxGlobalLine = 256;
constexpr int kMaxKeyDepth = 16;

class Unpickler {
 public:
  Unpickler(const std::uint8_t* data, std::size_t size, const std::string& context)
      : data_(data), size_(size), context_(context) {}

  ~Unpickler() {
    // Whatever happened, leave no reference cycles behind: containers that point at each other through
    // shared_ptr would leak. On success the graph was checked acyclic, and clearing only our own
    // bookkeeping is enough.
    if (!succeeded_) {
      for (const ValuePtr& container : containers_) {
        container->items.clear();
        container->entries.clear();
      }
    }
  }

  ValuePtr run() {
    for (;;) {
      op_offset_ = cursor_;
      const std::uint8_t op = read_u8();
      if (op == kStop) break;
      execute(op);
    }
    if (stack_.size() != 1 || !marks_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
    check_graph();
    succeeded_ = true;
    return stack_.back();
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw InputError(context_ + ": byte " + std::to_string(op_offset_) + ": " + problem);
  }

  // --- input --------------------------------------------------------------------------------------------

  const std::uint8_t* take(std::uint64_t count) {
    if (count > size_ - cursor_) fail("truncated pickle (needs " + std::to_string(count) + " more bytes)");
    const std::uint8_t* start = data_ + cursor_;
    cursor_ += std::size_t(count);
    return start;
  }
  std::uint8_t read_u8() { return *take(1); }
  std::uint64_t read_le(int bytes) {
    const std::uint8_t* p = take(std::uint64_t(bytes));
    std::uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
    return value;
  }
  std::string read_line() {
    const std::size_t limit = std::min(size_ - cursor_, kMaxGlobalLine);
    const void* newline = std::memchr(data_ + cursor_, '\n', limit);
    if (!newline) fail("unterminated GLOBAL name");
    const std::size_t length = std::size_t(static_cast<const std::uint8_t*>(newline) - (data_ + cursor_));
    std::string line(reinterpret_cast<const char*>(data_ + cursor_), length);
    cursor_ += length + 1;
    return line;
  }

  // --- values and stack -----------------------------------------------------------------------------------

  ValuePtr new_value(Kind kind) {
    if (++values_created_ > kMaxValues) fail("too many values");
    ValuePtr value = make_value(kind);
    if (kind == Kind::kTuple || kind == Kind::kList || kind == Kind::kDict) containers_.push_back(value);
    return value;
  }
  void push(ValuePtr value) {
    if (++pushes_ > kMaxPushes) fail("too many values");
    stack_.push_back(std::move(value));
  }
  // Items above the topmost MARK belong to the mark's owner, never to an opcode that pops one value.
  std::size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  ValuePtr pop() {
    if (stack_.size() <= stack_floor()) fail("stack underflow");
    ValuePtr value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }
  ValuePtr& top() {
    if (stack_.size() <= stack_floor()) fail("stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark() {
    if (marks_.empty()) fail("missing MARK");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + std::ptrdiff_t(mark)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }

  void push_int(std::int64_t value) {
    ValuePtr node = new_value(Kind::kInt);
    node->integer = value;
    push(std::move(node));
  }
  void push_text(Kind kind, std::uint64_t length) {
    const std::uint8_t* bytes = take(length);
    ValuePtr node = new_value(kind);
    node->text.assign(reinterpret_cast<const char*>(bytes), std::size_t(length));
    push(std::move(node));
  }
  void push_tuple(std::vector<ValuePtr> items) {
    ValuePtr node = new_value(Kind::kTuple);
    node->items = std::move(items);
    push(std::move(node));
  }
  void push_tuple_of(std::size_t count) {
    if (stack_.size() < stack_floor() + count) fail("stack underflow");
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.end() - std::ptrdiff_t(count)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(stack_.size() - count);
    push_tuple(std::move(items));
  }

  // Signed little-endian two's complement of LONG1 / LONG4.
  void push_long(std::uint64_t length) {
    if (length > 8) fail("integer wider than 64 bits");
    const std::uint8_t* bytes = take(length);
    std::uint64_t value = 0;
    for (std::uint64_t i = length; i-- > 0;) value = (value << 8) | bytes[i];
    if (length > 0 && length < 8 && (bytes[length - 1] & 0x80)) value |= ~std::uint64_t(0) << (8 * length);
    push_int(static_cast<std::int64_t>(value));
  }

  // --- memo ---------------------------------------------------------------------------------------------

  void memo_put(std::uint64_t index) { memo_[index] = top(); }
  void memo_get(std::uint64_t index) {
    const auto found = memo_.find(index);
    if (found == memo_.end()) fail("memo key " + std::to_string(index) + " was never stored");
    push(found->second);
  }

  // --- dicts: Python semantics, a repeated key replaces the value in place ----------------------------------

  // A canonical text form of hashable keys, so duplicate keys are found in O(1).
  bool key_signature(const Value& key, std::string* out, int depth) const {
    if (depth > kMaxKeyDepth) fail("dict key nested too deeply");
    switch (key.kind) {
      case Kind::kNone: *out += "N"; return true;
      case Kind::kBool: *out += "i" + std::to_string(key.boolean ? 1 : 0) + ";"; return true;  // True == 1
      case Kind::kInt: *out += "i" + std::to_string(key.integer) + ";"; return true;
      case Kind::kFloat: {
        const double real = key.real;
        if (real == double(std::int64_t(real)) && real > -9.2e18 && real < 9.2e18) {
          *out += "i" + std::to_string(std::int64_t(real)) + ";";  // 1.0 == 1
        } else {
          char buffer[40];
          std::snprintf(buffer, sizeof buffer, "f%a;", real);
          *out += buffer;
        }
        return true;
      }
      case Kind::kString: *out += "s" + std::to_string(key.text.size()) + ":" + key.text; return true;
      case Kind::kBytes: *out += "b" + std::to_string(key.text.size()) + ":" + key.text; return true;
      case Kind::kGlobal: *out += "g" + std::to_string(key.text.size()) + ":" + key.text; return true;
      case Kind::kTuple:
        *out += "(";
        for (const ValuePtr& item : key.items) key_signature(*item, out, depth + 1);
        *out += ")";
        return true;
      default: return false;
    }
  }

  void dict_set(Value& dict, ValuePtr key, ValuePtr value) {
    std::string signature;
    if (!key_signature(*key, &signature, 0)) fail(std::string("unhashable dict key of type ") + kind_name(key->kind));
    auto& index = dict_index_[&dict];
    const auto [slot, inserted] = index.emplace(std::move(signature), dict.entries.size());
    if (inserted) {
      dict.entries.emplace_back(std::move(key), std::move(value));
    } else {
      dict.entries[slot->second].second = std::move(value);
    }
  }

  Value& dict_on_stack(std::size_t position) {
    if (position < stack_floor() || position >= stack_.size()) fail("stack underflow");
    Value& dict = *stack_[position];
    if (dict.kind != Kind::kDict) fail(std::string("SETITEM on a ") + kind_name(dict.kind));
    return dict;
  }

  void set_items() {
    std::vector<ValuePtr> items = pop_to_mark();
    if (items.size() % 2 != 0) fail("SETITEMS with an odd number of values");
    if (stack_.empty()) fail("stack underflow");
    Value& dict = dict_on_stack(stack_.size() - 1);
    for (std::size_t i = 0; i < items.size(); i += 2) dict_set(dict, std::move(items[i]), std::move(items[i + 1]));
  }

  void set_item() {
    ValuePtr value = pop();
    ValuePtr key = pop();
    if (stack_.empty()) fail("stack underflow");
    dict_set(dict_on_stack(stack_.size() - 1), std::move(key), std::move(value));
  }

  Value& list_on_top() {
    Value& list = *top();
    if (list.kind != Kind::kList) fail(std::string("APPEND to a ") + kind_name(list.kind));
    return list;
  }

  // --- globals, persistent ids, calls -------------------------------------------------------------------

  void push_global(const std::string& module, const std::string& name) {
    const std::string full_name = module + "." + name;
    DType ignored;
    const bool permitted = full_name == kRebuildTensorV2 || full_name == kRebuildTensorV3 ||
                           full_name == kOrderedDict || dtype_from_storage_class(full_name, &ignored) ||
                           dtype_from_dtype_global(full_name, &ignored);
    if (!permitted) fail("unsupported global '" + full_name + "'");
    ValuePtr node = new_value(Kind::kGlobal);
    node->text = full_name;
    push(std::move(node));
  }

  static bool is_int(const Value& value) { return value.kind == Kind::kInt; }

  // ('storage', torch.<T>Storage, key, location, numel) -> a storage reference.
  void persistent_load() {
    const ValuePtr pid = pop();
    if (pid->kind != Kind::kTuple || pid->items.size() != 5) fail("persistent id is not a 5-tuple");
    const auto& fields = pid->items;
    if (fields[0]->kind != Kind::kString || fields[0]->text != "storage") fail("persistent id is not a storage");
    ValuePtr node = new_value(Kind::kStorage);
    if (fields[1]->kind != Kind::kGlobal || !dtype_from_storage_class(fields[1]->text, &node->storage.dtype)) {
      fail("persistent id names no storage class");
    }
    if (fields[2]->kind != Kind::kString) fail("storage key is not a str");
    if (fields[3]->kind != Kind::kString) fail("storage location is not a str");
    if (!is_int(*fields[4]) || fields[4]->integer < 0) fail("storage size is not a non-negative int");
    node->storage.key = fields[2]->text;
    node->storage.location = fields[3]->text;
    node->storage.numel = fields[4]->integer;
    push(std::move(node));
  }

  std::vector<std::int64_t> int_tuple(const Value& value, const char* what) const {
    if (value.kind != Kind::kTuple) fail(std::string("tensor ") + what + " is not a tuple");
    std::vector<std::int64_t> numbers;
    for (const ValuePtr& item : value.items) {
      if (!is_int(*item)) fail(std::string("tensor ") + what + " holds a " + kind_name(item->kind));
      numbers.push_back(item->integer);
    }
    return numbers;
  }

  // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]);
  // _v3 adds the dtype after the hooks.
  ValuePtr rebuild_tensor(const std::vector<ValuePtr>& args, bool v3) {
    const std::size_t required = v3 ? 7 : 6;
    if (args.size() != required && args.size() != required + 1) fail("tensor rebuild with wrong argument count");
    if (args[0]->kind != Kind::kStorage) fail("tensor rebuild without a storage");
    if (!is_int(*args[1]) || args[1]->integer < 0) fail("tensor storage offset is not a non-negative int");
    if (args[4]->kind != Kind::kBool) fail("tensor requires_grad is not a bool");
    ValuePtr node = new_value(Kind::kTensor);
    TensorRef& tensor = node->tensor;
    tensor.storage = args[0]->storage;
    tensor.storage_offset = args[1]->integer;
    tensor.shape = int_tuple(*args[2], "size");
    tensor.stride = int_tuple(*args[3], "stride");
    tensor.requires_grad = args[4]->boolean;
    if (tensor.shape.size() != tensor.stride.size()) fail("tensor size and stride differ in length");
    for (std::int64_t extent : tensor.shape) {
      if (extent < 0) fail("tensor has a negative size");
    }
    if (v3) {
      DType dtype;
      if (args[6]->kind != Kind::kGlobal || !dtype_from_dtype_global(args[6]->text, &dtype)) fail("tensor dtype is not a torch dtype");
      if (dtype != tensor.storage.dtype) fail("tensor dtype differs from its storage's");
    }
    return node;
  }

  void reduce() {
    const ValuePtr args = pop();
    const ValuePtr callable = pop();
    if (callable->kind != Kind::kGlobal) fail(std::string("REDUCE calls a ") + kind_name(callable->kind));
    if (args->kind != Kind::kTuple) fail("REDUCE arguments are not a tuple");
    if (callable->text == kOrderedDict) {
      if (!args->items.empty()) fail("OrderedDict with arguments is not supported");
      ValuePtr dict = new_value(Kind::kDict);
      dict->ordered_dict = true;
      push(std::move(dict));
    } else if (callable->text == kRebuildTensorV2 || callable->text == kRebuildTensorV3) {
      push(rebuild_tensor(args->items, callable->text == kRebuildTensorV3));
    } else {
      fail("cannot call '" + callable->text + "'");
    }
  }

  // --- dispatch -----------------------------------------------------------------------------------------

  void execute(std::uint8_t op) {
    switch (op) {
      case kProto: read_u8(); return;
      case kFrame: {
        const std::uint64_t frame_size = read_le(8);
        if (frame_size > size_ - cursor_) fail("frame longer than the pickle");
        return;
      }
      case kMark: marks_.push_back(stack_.size()); return;
      case kPop:
        if (stack_.size() > stack_floor()) {
          stack_.pop_back();
        } else {
          pop_to_mark();  // Python: POP at a mark discards the mark
        }
        return;
      case kPopMark: pop_to_mark(); return;
      case kDup: push(top()); return;
      case kNoneOp: push(none_); return;
      case kNewTrue: push(true_); return;
      case kNewFalse: push(false_); return;
      case kBinInt: push_int(std::int32_t(std::uint32_t(read_le(4)))); return;
      case kBinInt1: push_int(read_u8()); return;
      case kBinInt2: push_int(std::int64_t(read_le(2))); return;
      case kLong1: push_long(read_u8()); return;
      case kLong4: push_long(read_le(4)); return;
      case kBinFloat: {
        const std::uint8_t* p = take(8);
        std::uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];  // big-endian
        ValuePtr node = new_value(Kind::kFloat);
        std::memcpy(&node->real, &bits, sizeof bits);
        push(std::move(node));
        return;
      }
      case kBinUnicode: push_text(Kind::kString, read_le(4)); return;
      case kShortBinUnicode: push_text(Kind::kString, read_u8()); return;
      case kBinUnicode8: push_text(Kind::kString, read_le(8)); return;
      case kBinString: push_text(Kind::kString, read_le(4)); return;  // Python 2 str, read as text
      case kShortBinString: push_text(Kind::kString, read_u8()); return;
      case kBinBytes: push_text(Kind::kBytes, read_le(4)); return;
      case kShortBinBytes: push_text(Kind::kBytes, read_u8()); return;
      case kBinBytes8: push_text(Kind::kBytes, read_le(8)); return;
      case kEmptyTuple: push(empty_tuple_); return;
      case kTuple: push_tuple(pop_to_mark()); return;
      case kTuple1: push_tuple_of(1); return;
      case kTuple2: push_tuple_of(2); return;
      case kTuple3: push_tuple_of(3); return;
      case kEmptyList: push(new_value(Kind::kList)); return;
      case kAppend: {
        ValuePtr item = pop();
        list_on_top().items.push_back(std::move(item));
        return;
      }
      case kAppends: {
        std::vector<ValuePtr> items = pop_to_mark();
        Value& list = list_on_top();
        for (ValuePtr& item : items) list.items.push_back(std::move(item));
        return;
      }
      case kEmptyDict: push(new_value(Kind::kDict)); return;
      case kSetItem: set_item(); return;
      case kSetItems: set_items(); return;
      case kBinPut: memo_put(read_u8()); return;
      case kLongBinPut: memo_put(read_le(4)); return;
      case kMemoize: memo_put(memo_.size()); return;
      case kBinGet: memo_get(read_u8()); return;
      case kLongBinGet: memo_get(read_le(4)); return;
      case kGlobal: {
        const std::string module = read_line();
        const std::string name = read_line();
        push_global(module, name);
        return;
      }
      case kStackGlobal: {
        const ValuePtr name = pop();
        const ValuePtr module = pop();
        if (module->kind != Kind::kString || name->kind != Kind::kString) fail("STACK_GLOBAL needs two str");
        push_global(module->text, name->text);
        return;
      }
      case kBinPersId: persistent_load(); return;
      case kReduce: reduce(); return;
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("unsupported opcode ") + hex);
      }
    }
  }

  // --- final check: no cycles, bounded depth (so consumers may recurse and destruction is shallow) ------

  void check_graph() {
    constexpr int kInProgress = -1;
    std::unordered_map<const Value*, int> height;  // finished nodes: 1 + tallest child
    struct Frame {
      const Value* node;
      std::vector<const Value*> children;
      std::size_t next = 0;
    };
    // Only non-empty containers can close a cycle or add depth.
    auto children_of = [](const Value* node) {
      std::vector<const Value*> children;
      auto consider = [&](const ValuePtr& child) {
        if (!child->items.empty() || !child->entries.empty()) children.push_back(child.get());
      };
      for (const ValuePtr& item : node->items) consider(item);
      for (const auto& [key, value] : node->entries) {
        consider(key);
        consider(value);
      }
      return children;
    };
    for (const ValuePtr& start : containers_) {
      if (height.count(start.get())) continue;
      std::vector<Frame> path;
      height[start.get()] = kInProgress;
      path.push_back({start.get(), children_of(start.get())});
      while (!path.empty()) {
        Frame& frame = path.back();
        if (frame.next < frame.children.size()) {
          const Value* child = frame.children[frame.next++];
          const auto found = height.find(child);
          if (found == height.end()) {
            if (int(path.size()) >= kMaxDepth) fail("values nested deeper than " + std::to_string(kMaxDepth));
            height[child] = kInProgress;
            path.push_back({child, children_of(child)});
          } else if (found->second == kInProgress) {
            fail("self-referencing value");
          }
          continue;
        }
        int tallest = 0;
        for (const Value* child : frame.children) tallest = std::max(tallest, height[child]);
        if (tallest + 1 > kMaxDepth) fail("values nested deeper than " + std::to_string(kMaxDepth));
        height[frame.node] = tallest + 1;
        path.pop_back();
      }
    }
  }

  const std::uint8_t* data_;
  std::size_t size_;
  const std::string& context_;
  std::size_t cursor_ = 0;
  std::size_t op_offset_ = 0;

  std::vector<ValuePtr> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, ValuePtr> memo_;
  std::unordered_map<const Value*, std::unordered_map<std::string, std::size_t>> dict_index_;
  std::vector<ValuePtr> containers_;
  std::size_t values_created_ = 0;
  std::size_t pushes_ = 0;
  bool succeeded_ = false;

  // Immutable values shared by every occurrence: a pickle of a million NONE opcodes stays small.
  const ValuePtr none_ = make_value(Kind::kNone);
  const ValuePtr true_ = make_bool(true);
  const ValuePtr false_ = make_bool(false);
  const ValuePtr empty_tuple_ = make_value(Kind::kTuple);
};

}  // namespace

ValuePtr unpickle(const std::uint8_t* data, std::size_t size, const std::string& context) {
  return Unpickler(data, size, context).run();
}

// ---------------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------------

namespace {

constexpr std::size_t kBatchSize = 1000;  // CPython pickler BATCHSIZE for APPENDS / SETITEMS
constexpr int kMaxWriteDepth = 500;

class Pickler {
 public:
  std::string run(const Value& root) {
    out_ += char(kProto);
    out_ += char(2);
    save(root, 0);
    out_ += char(kStop);
    return std::move(out_);
  }

 private:
  void put_le(std::uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) out_ += char((value >> (8 * i)) & 0xff);
  }

  // --- memo: BINPUT / BINGET below 256, LONG_BINPUT / LONG_BINGET above, like Python ----------------------

  // The short opcode carries a 1-byte index, the long one a 4-byte index; put and get choose alike.
  void memo_opcode(Opcode short_op, Opcode long_op, std::uint32_t index) {
    const bool fits_one_byte = index < 256;
    out_ += char(fits_one_byte ? short_op : long_op);
    put_le(index, fits_one_byte ? 1 : 4);
  }
  std::uint32_t memo_put() {
    const std::uint32_t index = next_memo_++;
    memo_opcode(kBinPut, kLongBinPut, index);
    return index;
  }
  void memo_get(std::uint32_t index) { memo_opcode(kBinGet, kLongBinGet, index); }

  // --- scalars ------------------------------------------------------------------------------------------

  // Python's save_long: the smallest of BININT1 / BININT2 / BININT, else LONG1 with minimal two's complement.
  void save_int(std::int64_t value) {
    if (value >= 0 && value <= 0xff) {
      out_ += char(kBinInt1);
      put_le(std::uint64_t(value), 1);
    } else if (value >= 0 && value <= 0xffff) {
      out_ += char(kBinInt2);
      put_le(std::uint64_t(value), 2);
    } else if (value >= -0x80000000LL && value <= 0x7fffffffLL) {
      out_ += char(kBinInt);
      put_le(std::uint64_t(value) & 0xffffffffu, 4);
    } else {
      // encode_long: nbytes = bit_length(|x|) / 8 + 1 bytes of sign-extended x, then drop a redundant 0xff.
      const std::uint64_t magnitude = value < 0 ? std::uint64_t(0) - std::uint64_t(value) : std::uint64_t(value);
      int bit_length = 0;
      for (std::uint64_t rest = magnitude; rest; rest >>= 1) ++bit_length;
      int byte_count = bit_length / 8 + 1;  // at most 9
      std::uint8_t bytes[9];
      for (int i = 0; i < 9; ++i) {
        bytes[i] = i < 8 ? std::uint8_t(std::uint64_t(value) >> (8 * i)) : (value < 0 ? 0xff : 0x00);
      }
      if (value < 0 && byte_count > 1 && bytes[byte_count - 1] == 0xff && (bytes[byte_count - 2] & 0x80)) --byte_count;
      out_ += char(kLong1);
      put_le(std::uint64_t(byte_count), 1);
      out_.append(reinterpret_cast<const char*>(bytes), std::size_t(byte_count));
    }
  }

  void save_float(double value) {
    std::uint64_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    out_ += char(kBinFloat);
    for (int i = 7; i >= 0; --i) out_ += char((bits >> (8 * i)) & 0xff);
  }

  void write_unicode(const std::string& text) {
    out_ += char(kBinUnicode);
    put_le(text.size(), 4);
    out_ += text;
  }

  // Interned strings: the first occurrence is written and memoized, later equal ones are memo lookups.
  void save_string(const std::string& text) {
    const auto found = memo_strings_.find(text);
    if (found != memo_strings_.end()) {
      memo_get(found->second);
      return;
    }
    write_unicode(text);
    memo_strings_.emplace(text, memo_put());
  }

  // A string object made at run time (a storage key): never shared with an earlier equal literal.
  void save_fresh_string(const std::string& text) {
    write_unicode(text);
    memo_put();
  }

  void save_global(const std::string& full_name) {
    const auto found = memo_globals_.find(full_name);
    if (found != memo_globals_.end()) {
      memo_get(found->second);
      return;
    }
    const std::size_t dot = full_name.rfind('.');
    if (dot == std::string::npos) throw std::invalid_argument("pickle: global '" + full_name + "' has no module");
    out_ += char(kGlobal);
    out_ += full_name.substr(0, dot) + "\n" + full_name.substr(dot + 1) + "\n";
    memo_globals_.emplace(full_name, memo_put());
  }

  // --- containers ----------------------------------------------------------------------------------------

  bool reuse(const Value& value) {
    const auto found = memo_objects_.find(&value);
    if (found == memo_objects_.end()) return false;
    memo_get(found->second);
    return true;
  }

  // Python's save_tuple, including its handling of a tuple reached again through its own elements.
  template <typename SaveItem>
  void save_tuple_items(const void* identity, std::size_t count, SaveItem save_item) {
    if (count == 0) {
      out_ += char(kEmptyTuple);
      return;
    }
    if (count <= 3) {
      for (std::size_t i = 0; i < count; ++i) save_item(i);
      const auto found = memo_objects_.find(identity);
      if (found != memo_objects_.end()) {
        out_.append(count, char(kPop));
        memo_get(found->second);
        return;
      }
      out_ += char(kTuple1 + count - 1);
    } else {
      out_ += char(kMark);
      for (std::size_t i = 0; i < count; ++i) save_item(i);
      const auto found = memo_objects_.find(identity);
      if (found != memo_objects_.end()) {
        out_ += char(kPopMark);
        memo_get(found->second);
        return;
      }
      out_ += char(kTuple);
    }
    const std::uint32_t index = memo_put();
    if (identity) memo_objects_.emplace(identity, index);
  }

  void save_int_tuple(const std::vector<std::int64_t>& numbers) {
    save_tuple_items(nullptr, numbers.size(), [&](std::size_t i) { save_int(numbers[i]); });
  }

  // Item batching follows CPython's C pickler (torch.save uses it), whose three loops differ in edge cases:
  // exact lists and dicts of one item use APPEND / SETITEM; otherwise MARK..APPENDS / MARK..SETITEMS batches
  // of 1000, where an exact dict whose size is a multiple of 1000 ends with an empty batch. Dicts written
  // through __reduce__ (OrderedDict) go through the generic loop, whose last single item uses SETITEM.
  void save_list(const Value& list, int depth) {
    out_ += char(kEmptyList);
    memo_objects_.emplace(&list, memo_put());
    const std::size_t count = list.items.size();
    if (count == 1) {
      save(*list.items[0], depth + 1);
      out_ += char(kAppend);
      return;
    }
    for (std::size_t begin = 0; begin < count; begin += kBatchSize) {
      out_ += char(kMark);
      for (std::size_t i = begin; i < std::min(count, begin + kBatchSize); ++i) save(*list.items[i], depth + 1);
      out_ += char(kAppends);
    }
  }

  void save_entry(const Value& dict, std::size_t i, int depth) {
    save(*dict.entries[i].first, depth + 1);
    save(*dict.entries[i].second, depth + 1);
  }

  void save_dict(const Value& dict, int depth) {
    const std::size_t count = dict.entries.size();
    if (dict.ordered_dict) {
      // OrderedDict.__reduce__: (OrderedDict, (), None, None, iter(items)).
      save_global(kOrderedDict);
      out_ += char(kEmptyTuple);
      out_ += char(kReduce);
      memo_objects_.emplace(&dict, memo_put());
      for (std::size_t begin = 0; begin < count; begin += kBatchSize) {
        const std::size_t end = std::min(count, begin + kBatchSize);
        if (end - begin == 1) {
          save_entry(dict, begin, depth);
          out_ += char(kSetItem);
          break;
        }
        out_ += char(kMark);
        for (std::size_t i = begin; i < end; ++i) save_entry(dict, i, depth);
        out_ += char(kSetItems);
      }
      return;
    }
    out_ += char(kEmptyDict);
    memo_objects_.emplace(&dict, memo_put());
    if (count == 0) return;
    if (count == 1) {
      save_entry(dict, 0, depth);
      out_ += char(kSetItem);
      return;
    }
    std::size_t begin = 0;
    std::size_t batch = 0;
    do {
      out_ += char(kMark);
      batch = std::min(kBatchSize, count - begin);
      for (std::size_t i = begin; i < begin + batch; ++i) save_entry(dict, i, depth);
      out_ += char(kSetItems);
      begin += batch;
    } while (batch == kBatchSize);
  }

  // torch.Tensor.__reduce_ex__ -> _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict()).
  void save_tensor(const Value& node) {
    const TensorRef& tensor = node.tensor;
    const char* storage_class = storage_class_name(tensor.storage.dtype);
    if (!storage_class) throw std::invalid_argument("pickle: tensor dtype has no storage class");
    save_global(kRebuildTensorV2);
    out_ += char(kMark);
    {
      // persistent_id(storage): a fresh tuple each time, then BINPERSID.
      out_ += char(kMark);
      save_string("storage");
      save_global(storage_class);
      save_fresh_string(tensor.storage.key);
      save_string(tensor.storage.location);
      save_int(tensor.storage.numel);
      out_ += char(kTuple);
      memo_put();
      out_ += char(kBinPersId);
    }
    save_int(tensor.storage_offset);
    save_int_tuple(tensor.shape);
    save_int_tuple(tensor.stride);
    out_ += char(tensor.requires_grad ? kNewTrue : kNewFalse);
    save_global(kOrderedDict);  // backward hooks: a new, empty OrderedDict
    out_ += char(kEmptyTuple);
    out_ += char(kReduce);
    memo_put();
    out_ += char(kTuple);
    memo_put();
    out_ += char(kReduce);
    memo_objects_.emplace(&node, memo_put());
  }

  void save(const Value& value, int depth) {
    if (depth > kMaxWriteDepth) throw std::invalid_argument("pickle: values nested too deeply");
    switch (value.kind) {
      case Kind::kNone: out_ += char(kNoneOp); return;
      case Kind::kBool: out_ += char(value.boolean ? kNewTrue : kNewFalse); return;
      case Kind::kInt: save_int(value.integer); return;
      case Kind::kFloat: save_float(value.real); return;
      case Kind::kString: save_string(value.text); return;
      case Kind::kGlobal: save_global(value.text); return;
      case Kind::kTuple:
        if (reuse(value)) return;
        save_tuple_items(&value, value.items.size(), [&](std::size_t i) { save(*value.items[i], depth + 1); });
        return;
      case Kind::kList:
        if (!reuse(value)) save_list(value, depth);
        return;
      case Kind::kDict:
        if (!reuse(value)) save_dict(value, depth);
        return;
      case Kind::kTensor:
        if (!reuse(value)) save_tensor(value);
        return;
      case Kind::kBytes:
      case Kind::kStorage: break;
    }
    throw std::invalid_argument(std::string("pickle: cannot write a bare ") + kind_name(value.kind));
  }

  std::string out_;
  std::uint32_t next_memo_ = 0;
  std::unordered_map<const void*, std::uint32_t> memo_objects_;
  std::unordered_map<std::string, std::uint32_t> memo_strings_;
  std::unordered_map<std::string, std::uint32_t> memo_globals_;
};

}  // namespace

std::string pickle_protocol2(const Value& root) { return Pickler().run(root); }

}  // namespace oscar::io::pickle
